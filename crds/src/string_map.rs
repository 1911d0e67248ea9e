//! [`StringMap`]: a `map[string]string` that stays small in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `map[string]string` with the JSON form and schema of one, kept as a single vector sorted by
/// key. The controller caches every UserDeployment, and a `BTreeMap` allocates a node with room
/// for eleven entries (about 540 bytes) even for one parameter; this is about 50 bytes plus the
/// strings. Lookups are binary searches: these maps hold at most a hundred entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StringMap(Vec<(String, String)>);

impl StringMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl FromIterator<(String, String)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        // Through a BTreeMap: sorted, and a repeated key keeps its last value, as in JSON.
        let map: BTreeMap<String, String> = iter.into_iter().collect();
        map.into()
    }
}

impl From<BTreeMap<String, String>> for StringMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut v: Vec<(String, String)> = map.into_iter().collect();
        v.shrink_to_fit();
        StringMap(v)
    }
}

impl From<StringMap> for BTreeMap<String, String> {
    fn from(map: StringMap) -> Self {
        map.0.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a StringMap {
    type Item = (&'a String, &'a String);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, String)>, fn(&'a (String, String)) -> (&'a String, &'a String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for StringMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Into::into)
    }
}

impl schemars::JsonSchema for StringMap {
    fn inline_schema() -> bool {
        <BTreeMap<String, String> as schemars::JsonSchema>::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        <BTreeMap<String, String> as schemars::JsonSchema>::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, String> as schemars::JsonSchema>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map_and_serializes_as_an_object() {
        let mut m: StringMap = serde_json::from_str(r#"{"B":"2","A":"1","B":"3"}"#).unwrap();
        assert_eq!(m.get("B").map(String::as_str), Some("3"), "last value wins, as in JSON");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(m.insert("C".into(), "4".into()), None);
        assert_eq!(m.insert("A".into(), "5".into()).as_deref(), Some("1"));
        assert_eq!(m.remove("B").as_deref(), Some("3"));
        assert!(!m.contains_key("B"));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"A":"5","C":"4"}"#);
        assert_eq!(m.len(), 2);
        let b: BTreeMap<String, String> = m.clone().into();
        assert_eq!(StringMap::from(b), m);
    }

    #[test]
    fn has_the_schema_of_a_string_map() {
        let ours = schemars::schema_for!(StringMap);
        let btree = schemars::schema_for!(BTreeMap<String, String>);
        assert_eq!(ours, btree);
    }
}

/// Schema transform giving a `map[string]string` field limits on its values, which schemars'
/// `inner(length(...))` does not reach (it applies to sequences, not to `additionalProperties`):
/// `#[schemars(transform = MapValues { max: 4096, ..MapValues::ANY })]`. Kubernetes schemas
/// cannot limit keys (no `propertyNames`): a CEL rule on `size(k)` does.
#[derive(Clone, Copy, Debug)]
pub struct MapValues {
    /// Shortest value.
    pub min: u64,
    /// Longest value, in characters.
    pub max: u64,
    /// Regular expression every value matches, if any.
    pub pattern: Option<&'static str>,
}

impl MapValues {
    /// No limit (a base for struct update syntax).
    pub const ANY: MapValues = MapValues {
        min: 0,
        max: u64::MAX,
        pattern: None,
    };
}

impl schemars::transform::Transform for MapValues {
    fn transform(&mut self, schema: &mut schemars::Schema) {
        let mut values = serde_json::json!({ "type": "string", "maxLength": self.max });
        if self.min > 0 {
            values["minLength"] = self.min.into();
        }
        if let Some(p) = self.pattern {
            values["pattern"] = p.into();
        }
        schema.insert("additionalProperties".into(), values);
    }
}
