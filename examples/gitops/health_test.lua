-- Tests of health.lua on sample objects: lua5.4 health_test.lua health.lua
local script = arg[1] or "health.lua"
local function health(o)
  local env = setmetatable({ obj = o }, { __index = _G })
  local chunk = assert(loadfile(script, "t", env))
  return chunk()
end
local function ud(generation, observed, conditions)
  return { metadata = { name = "blog", generation = generation },
           status = { observedGeneration = observed, conditions = conditions } }
end
local failures = 0
local function expect(name, o, status, message_part)
  local hs = health(o)
  local ok = hs.status == status and (message_part == nil or string.find(hs.message or "", message_part, 1, true) ~= nil)
  if ok then
    print("ok   " .. name)
  else
    failures = failures + 1
    print("FAIL " .. name .. ": got " .. tostring(hs.status) .. " / " .. tostring(hs.message))
  end
end
expect("ready", ud(2, 2, {
  { type = "Ready", status = "True", reason = "Available", message = "every service is available" },
  { type = "Degraded", status = "False", reason = "AsExpected" } }), "Healthy", "available")
expect("progressing", ud(1, 1, {
  { type = "Ready", status = "False", reason = "RollingOut", message = "waiting for pods: web 0/1" },
  { type = "Progressing", status = "True", reason = "RollingOut" } }), "Progressing", "web 0/1")
expect("degraded", ud(3, 3, {
  { type = "Ready", status = "False", reason = "TemplateNotFound" },
  { type = "Degraded", status = "True", reason = "TemplateNotFound", message = "template \"x\" not found" } }),
  "Degraded", "not found")
expect("suspended", ud(5, 5, {
  { type = "Ready", status = "False", reason = "Suspended" },
  { type = "Degraded", status = "True", reason = "PlanLimitExceeded", message = "the free plan allows 1 deployment" },
  { type = "Suspended", status = "True", reason = "PlanLimitExceeded", message = "the free plan allows 1 deployment" } }),
  "Suspended", "free plan allows 1")
expect("stale observedGeneration", ud(4, 3, {
  { type = "Ready", status = "True", reason = "Available" } }), "Progressing", "generation 4")
expect("no status yet", { metadata = { name = "new", generation = 1 } }, "Progressing", "controller")
print(string.format("%d passed, %d failed", 6 - failures, failures))
if failures > 0 then os.exit(1) end
