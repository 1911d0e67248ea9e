//! The Stripe API client (`billing::stripe`, issue 17) against stripe-mock (E2E_STRIPE_MOCK_URL,
//! which hack/test starts) through the recording front of `e2e::stripe`: each call sends the
//! request Stripe documents and reads stripe-mock's real answer. stripe-mock is stateless and
//! answers fixtures (ids of created objects are made up, other fields are the fixture's), so the
//! checks on what was sent are on the recorded request, and subscription states come from the
//! front.

use anyhow::Result;
use apiserver::billing::stripe::{Invoice, StripeApi, Subscription};
use e2e::stripe::{RecordedRequest, StripeFront};

// stripe-mock wants three `_`-separated parts (sk, test, anything without `_`), like real keys.
const KEY: &str = "sk_test_k8sScheduler";

async fn setup() -> Result<(StripeFront, StripeApi)> {
    let front = StripeFront::from_env().await?;
    let api = StripeApi::new(KEY, front.url())?;
    Ok((front, api))
}

/// The one request the front received.
fn only_request(front: &StripeFront) -> RecordedRequest {
    let requests = front.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.into_iter().next().unwrap()
}

#[tokio::test]
async fn create_customer_sends_name_email_and_scope_and_returns_the_id() -> Result<()> {
    let (front, api) = setup().await?;
    let id = api
        .create_customer(Some("ada@example.com"), "Ada Lovelace", "org:analytical")
        .await?;
    assert!(id.starts_with("cus_"), "{id}");

    let sent = only_request(&front);
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/customers"));
    assert_eq!(sent.form_value("name"), Some("Ada Lovelace"));
    assert_eq!(sent.form_value("email"), Some("ada@example.com"));
    assert_eq!(sent.form_value("metadata[k8s_scheduler_scope]"), Some("org:analytical"));
    assert_eq!(sent.idempotency_key, None);

    front.clear();
    api.create_customer(None, "No Mail", "user:nomail").await?;
    let sent = only_request(&front);
    assert_eq!(sent.form_value("email"), None, "{sent:?}");
    assert_eq!(sent.form_value("metadata[k8s_scheduler_scope]"), Some("user:nomail"));
    Ok(())
}

#[tokio::test]
async fn checkout_session_subscribes_the_customer_to_the_price_and_returns_the_url() -> Result<()> {
    let (front, api) = setup().await?;
    let url = api
        .checkout_session(
            "cus_Alice",
            "price_business_monthly",
            "user:alice",
            "https://app.test/billing?checkout=done",
            "https://app.test/billing?checkout=cancelled",
        )
        .await?;
    assert!(url.starts_with("https://checkout.stripe.com/"), "{url}");

    let sent = only_request(&front);
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/checkout/sessions")
    );
    for (key, value) in [
        ("mode", "subscription"),
        ("customer", "cus_Alice"),
        ("line_items[0][price]", "price_business_monthly"),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", "user:alice"),
        ("subscription_data[metadata][k8s_scheduler_scope]", "user:alice"),
        ("success_url", "https://app.test/billing?checkout=done"),
        ("cancel_url", "https://app.test/billing?checkout=cancelled"),
    ] {
        assert_eq!(sent.form_value(key), Some(value), "{key} in {sent:#?}");
    }
    assert_eq!(
        sent.form.iter().filter(|(k, _)| k.starts_with("line_items[")).count(),
        2,
        "one line item: {sent:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn portal_session_returns_the_url() -> Result<()> {
    let (front, api) = setup().await?;
    let url = api.portal_session("cus_Alice", "https://app.test/billing").await?;
    // stripe-mock's fixture URL (Stripe's own is https://billing.stripe.com/p/session/...).
    assert!(url.starts_with("https://") && url.contains("/session/"), "{url}");

    let sent = only_request(&front);
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/billing_portal/sessions")
    );
    assert_eq!(sent.form_value("customer"), Some("cus_Alice"));
    assert_eq!(sent.form_value("return_url"), Some("https://app.test/billing"));
    Ok(())
}

#[tokio::test]
async fn subscription_reads_the_state_the_front_sets_and_none_once_deleted() -> Result<()> {
    let (front, api) = setup().await?;

    // stripe-mock's own fixture, with the id echoed.
    let fixture = api
        .subscription("sub_fixture")
        .await?
        .expect("stripe-mock knows every id");
    assert_eq!(fixture.id, "sub_fixture");
    assert_eq!(fixture.status, "active");
    assert!(fixture.customer.starts_with("cus_"), "{fixture:?}");
    assert_eq!(fixture.price_ids.len(), 1, "{fixture:?}");
    assert!(fixture.price_ids[0].starts_with("price_"), "{fixture:?}");
    assert!(fixture.current_period_end.is_some(), "{fixture:?}");
    let sent = only_request(&front);
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("GET", "/v1/subscriptions/sub_fixture")
    );

    front.set_subscription("sub_business", "past_due", "price_business_monthly", 1_900_000_000);
    let sub = api.subscription("sub_business").await?.expect("set");
    assert_eq!(
        sub,
        Subscription {
            id: "sub_business".into(),
            customer: fixture.customer.clone(),
            status: "past_due".into(),
            price_ids: vec!["price_business_monthly".into()],
            current_period_end: Some(1_900_000_000),
            // The fixture item's start, untouched by set_subscription.
            current_period_start: fixture.current_period_start,
            cancel_at_period_end: fixture.cancel_at_period_end,
        }
    );
    // Other ids keep stripe-mock's answer.
    assert_eq!(api.subscription("sub_other").await?.expect("fixture").status, "active");

    front.patch_subscription("sub_business", |sub| {
        sub["status"] = "canceled".into();
        sub["customer"] = "cus_Alice".into();
        sub["cancel_at_period_end"] = false.into();
    });
    let sub = api.subscription("sub_business").await?.expect("patched");
    assert_eq!((sub.status.as_str(), sub.customer.as_str()), ("canceled", "cus_Alice"));
    assert!(!sub.cancel_at_period_end);

    front.delete_subscription("sub_business");
    assert_eq!(api.subscription("sub_business").await?, None);
    Ok(())
}

#[tokio::test]
async fn invoices_lists_the_customers_invoices() -> Result<()> {
    let (front, api) = setup().await?;
    let invoices = api.invoices("cus_Alice", 5).await?;
    // stripe-mock's list holds its one fixture invoice, whatever the customer.
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    let Invoice {
        id,
        currency,
        amount_due,
        amount_paid,
        created,
        status,
        ..
    } = &invoices[0];
    assert!(id.starts_with("in_"), "{invoices:?}");
    assert_eq!(currency, "usd");
    assert!(*amount_due >= 0 && *amount_paid >= 0 && *created > 0, "{invoices:?}");
    assert!(status.is_some(), "{invoices:?}");

    let sent = only_request(&front);
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("GET", "/v1/invoices"));
    assert_eq!(sent.query_value("customer"), Some("cus_Alice"));
    assert_eq!(sent.query_value("limit"), Some("5"));

    // The Billing page shows them: camelCase JSON.
    let json = serde_json::to_value(&invoices[0])?;
    assert!(
        json.get("hostedInvoiceUrl").is_some() && json.get("amountDue").is_some(),
        "{json}"
    );

    front.clear();
    let err = api.invoices("cus_Alice", 0).await.unwrap_err().to_string();
    assert!(err.contains("invoice limit must be 1 to 100"), "{err}");
    assert!(front.requests().is_empty(), "a bad limit is refused before any request");
    Ok(())
}

#[tokio::test]
async fn meter_event_sends_customer_value_identifier_and_idempotency_key() -> Result<()> {
    let (front, api) = setup().await?;
    api.meter_event(
        "app_cpu_seconds",
        "cus_Alice",
        7_200,
        "usage-user-alice-2026-11-30T10",
        1_764_496_800,
    )
    .await?;

    let sent = only_request(&front);
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/billing/meter_events")
    );
    for (key, value) in [
        ("event_name", "app_cpu_seconds"),
        ("payload[stripe_customer_id]", "cus_Alice"),
        ("payload[value]", "7200"),
        ("identifier", "usage-user-alice-2026-11-30T10"),
        ("timestamp", "1764496800"),
    ] {
        assert_eq!(sent.form_value(key), Some(value), "{key} in {sent:#?}");
    }
    assert_eq!(sent.idempotency_key.as_deref(), Some("usage-user-alice-2026-11-30T10"));
    Ok(())
}

#[tokio::test]
async fn refused_keys_and_unreachable_stripe_give_clear_errors_without_the_key() -> Result<()> {
    let front = StripeFront::from_env().await?;
    // stripe-mock takes any test-mode secret key (sk_test_... or rk_test_...) and refuses the
    // rest, echoing the Authorization header it got: the error must not carry it on.
    for key in ["sk_live_do_not_print", "pk_test_do_not_print"] {
        let api = StripeApi::new(key, front.url())?;
        let err = api
            .checkout_session("cus_A", "price_A", "user:a", "https://a/ok", "https://a/no")
            .await;
        let err = format!("{:#}", err.unwrap_err());
        assert!(
            err.contains("Stripe refused the checkout session (HTTP 401, invalid_request_error)"),
            "{err}"
        );
        assert!(err.contains("Please authenticate"), "Stripe's message is kept: {err}");
        assert!(!err.contains("do_not_print"), "the key leaked: {err}");
    }

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let api = StripeApi::new(KEY, &format!("http://127.0.0.1:{port}"))?;
    let err = format!("{:#}", api.subscription("sub_A").await.unwrap_err());
    assert!(
        err.contains(&format!(
            "cannot reach Stripe at http://127.0.0.1:{port}/ about the subscription sub_A"
        )),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
    Ok(())
}
