//! The behaviour every `MetadataStore` promises, written once and run on every backend.

use std::sync::Arc;

use landfall_storage::{
    ApiKey, Budget, BudgetLimit, BudgetPeriod, Limits, MetadataStore, PageRequest, Scopes,
    StoreError, Tenant, UsageRecord, UsageScope, UsageTotals,
};
use serde_json::json;

const HOUR_MS: i64 = 3_600_000;
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

pub fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.to_owned(),
        name: format!("Tenant {id}"),
        limits: Limits {
            requests_per_second: Some(10),
            requests_per_minute: Some(600),
            tokens_per_minute: Some(u64::MAX),
            max_concurrent_requests: None,
        },
        budgets: vec![
            Budget {
                period: BudgetPeriod::Day,
                limit: BudgetLimit::Tokens(1_000_000),
            },
            Budget {
                period: BudgetPeriod::Month,
                limit: BudgetLimit::CostNanos(25_000_000_000),
            },
        ],
        metadata: json!({"team": "search", "nested": {"list": [1, 2.5, null, "x"]}, "ü": true})
            .as_object()
            .cloned()
            .unwrap(),
        created_at: T0,
        updated_at: T0 + 1,
        revoked_at: None,
    }
}

pub fn key(id: &str, tenant_id: &str) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        name: format!("key {id}"),
        secret_sha256: (0u8..32).map(|byte| byte.wrapping_mul(7)).collect(),
        secret_hint: "x9Zq".to_owned(),
        scopes: Scopes {
            models: Some(vec!["gpt-4o".to_owned(), "claude".to_owned()]),
            knowledge_bases: Some(vec![]),
            tools: None,
        },
        limits: Limits {
            requests_per_second: None,
            requests_per_minute: Some(60),
            tokens_per_minute: Some(100_000),
            max_concurrent_requests: Some(4),
        },
        budgets: vec![Budget {
            period: BudgetPeriod::Day,
            limit: BudgetLimit::CostNanos(1),
        }],
        metadata: json!({"owner": "ci"}).as_object().cloned().unwrap(),
        expires_at: Some(T0 + 30 * 24 * HOUR_MS),
        created_at: T0,
        updated_at: T0,
        revoked_at: None,
    }
}

fn usage(key_id: &str, target: &str, hour: i64, requests: u64) -> UsageRecord {
    UsageRecord {
        tenant_id: "acme".to_owned(),
        key_id: key_id.to_owned(),
        model: "chat".to_owned(),
        target: target.to_owned(),
        hour,
        requests,
        cache_hits: requests / 2,
        input_tokens: requests * 100,
        cached_input_tokens: requests * 10,
        output_tokens: requests * 20,
        cost_nanos: requests * 1_000,
    }
}

fn page(after: Option<&str>, limit: u32) -> PageRequest {
    PageRequest {
        after: after.map(str::to_owned),
        limit,
    }
}

fn ids_of_tenants(tenants: &[Tenant]) -> Vec<&str> {
    tenants.iter().map(|tenant| tenant.id.as_str()).collect()
}

fn ids_of_keys(keys: &[ApiKey]) -> Vec<&str> {
    keys.iter().map(|key| key.id.as_str()).collect()
}

pub async fn tenant_round_trip(store: Arc<dyn MetadataStore>) {
    let original = tenant("acme");
    store.create_tenant(&original).await.unwrap();
    assert_eq!(
        store.get_tenant("acme").await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(store.get_tenant("nobody").await.unwrap(), None);

    let mut changed = original;
    changed.name = "Acme Corp".to_owned();
    changed.limits = Limits::default();
    changed.budgets = vec![];
    changed.metadata = serde_json::Map::new();
    changed.updated_at = T0 + 5;
    changed.revoked_at = Some(T0 + 5);
    assert!(store.update_tenant(&changed).await.unwrap());
    assert_eq!(
        store.get_tenant("acme").await.unwrap(),
        Some(changed.clone())
    );

    // Un-revoking is a whole-record update too.
    changed.revoked_at = None;
    assert!(store.update_tenant(&changed).await.unwrap());
    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(changed));

    assert!(!store.update_tenant(&tenant("nobody")).await.unwrap());
    assert_eq!(store.get_tenant("nobody").await.unwrap(), None);
}

pub async fn tenant_conflict(store: Arc<dyn MetadataStore>) {
    let original = tenant("acme");
    store.create_tenant(&original).await.unwrap();
    let mut second = tenant("acme");
    second.name = "impostor".to_owned();
    let err = store.create_tenant(&second).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { entity: "tenant", id } if id == "acme"),
        "{err:?}"
    );
    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(original));
}

pub async fn tenants_list_in_id_order_and_pages(store: Arc<dyn MetadataStore>) {
    assert!(store.list_tenants(&page(None, 0)).await.unwrap().is_empty());
    // Byte order: '-' < '1' < '_' < 'b'; a linguistic collation would order these differently.
    let mut expected = vec!["a-1", "a1", "a_1", "b", "c0", "c00", "z"];
    for id in ["z", "a_1", "c00", "b", "a1", "c0", "a-1"] {
        store.create_tenant(&tenant(id)).await.unwrap();
    }
    let all = store.list_tenants(&page(None, 0)).await.unwrap();
    assert_eq!(ids_of_tenants(&all), expected);
    assert_eq!(all[0], tenant("a-1"), "listed records carry every field");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store
            .list_tenants(&page(after.as_deref(), 3))
            .await
            .unwrap();
        assert!(batch.len() <= 3);
        let Some(last) = batch.last() else { break };
        after = Some(last.id.clone());
        seen.extend(batch.iter().map(|tenant| tenant.id.clone()));
    }
    assert_eq!(seen, expected);

    // `after` need not be an existing id.
    let tail = store.list_tenants(&page(Some("c"), 2)).await.unwrap();
    assert_eq!(ids_of_tenants(&tail), ["c0", "c00"]);
    assert!(
        store
            .list_tenants(&page(Some("z"), 10))
            .await
            .unwrap()
            .is_empty()
    );
    expected.retain(|id| *id > "b");
    let rest = store.list_tenants(&page(Some("b"), 1000)).await.unwrap();
    assert_eq!(ids_of_tenants(&rest), expected);
}

pub async fn key_round_trip(store: Arc<dyn MetadataStore>) {
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("other")).await.unwrap();
    let original = key("key_0000000000000001", "acme");
    store.create_key(&original).await.unwrap();
    let fetched = store.get_key(&original.id).await.unwrap();
    assert_eq!(fetched, Some(original.clone()));
    assert_eq!(store.get_key("key_missing").await.unwrap(), None);

    let mut changed = original.clone();
    changed.name = "renamed".to_owned();
    changed.secret_sha256 = vec![0xff; 32];
    changed.secret_hint = "AbCd".to_owned();
    changed.scopes = Scopes::default();
    changed.limits = Limits::default();
    changed.budgets = vec![Budget {
        period: BudgetPeriod::Month,
        limit: BudgetLimit::Tokens(u64::MAX),
    }];
    changed.metadata = json!({"rotated": 1}).as_object().cloned().unwrap();
    changed.expires_at = None;
    changed.updated_at = T0 + 9;
    changed.revoked_at = Some(T0 + 9);
    assert!(store.update_key(&changed).await.unwrap());
    assert_eq!(
        store.get_key(&original.id).await.unwrap(),
        Some(changed.clone())
    );

    // Moving a key to another existing tenant is allowed; to a missing one is not.
    changed.tenant_id = "other".to_owned();
    assert!(store.update_key(&changed).await.unwrap());
    assert_eq!(
        store.get_key(&original.id).await.unwrap(),
        Some(changed.clone())
    );
    let mut orphan = changed.clone();
    orphan.tenant_id = "ghost".to_owned();
    let err = store.update_key(&orphan).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { entity: "tenant", id } if id == "ghost"),
        "{err:?}"
    );
    assert_eq!(store.get_key(&original.id).await.unwrap(), Some(changed));

    assert!(!store.update_key(&key("key_missing", "acme")).await.unwrap());
    assert_eq!(store.get_key("key_missing").await.unwrap(), None);
}

pub async fn key_conflict(store: Arc<dyn MetadataStore>) {
    store.create_tenant(&tenant("acme")).await.unwrap();
    let original = key("key_a", "acme");
    store.create_key(&original).await.unwrap();
    let mut second = key("key_a", "acme");
    second.secret_sha256 = vec![1; 32];
    let err = store.create_key(&second).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { entity: "key", id } if id == "key_a"),
        "{err:?}"
    );
    assert_eq!(store.get_key("key_a").await.unwrap(), Some(original));
}

pub async fn key_for_missing_tenant(store: Arc<dyn MetadataStore>) {
    let err = store.create_key(&key("key_a", "ghost")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { entity: "tenant", id } if id == "ghost"),
        "{err:?}"
    );
    assert_eq!(store.get_key("key_a").await.unwrap(), None);
    assert!(
        store
            .list_keys(None, &page(None, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn keys_list_by_tenant_and_page(store: Arc<dyn MetadataStore>) {
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();
    for (id, owner) in [
        ("key_e", "acme"),
        ("key_b", "beta"),
        ("key_a", "acme"),
        ("key_d", "beta"),
        ("key_c", "acme"),
    ] {
        store.create_key(&key(id, owner)).await.unwrap();
    }

    let all = store.list_keys(None, &page(None, 0)).await.unwrap();
    assert_eq!(
        ids_of_keys(&all),
        ["key_a", "key_b", "key_c", "key_d", "key_e"]
    );
    assert_eq!(
        all[0],
        key("key_a", "acme"),
        "listed records carry every field"
    );

    let acme = store.list_keys(Some("acme"), &page(None, 0)).await.unwrap();
    assert_eq!(ids_of_keys(&acme), ["key_a", "key_c", "key_e"]);
    let acme_after = store
        .list_keys(Some("acme"), &page(Some("key_a"), 1))
        .await
        .unwrap();
    assert_eq!(ids_of_keys(&acme_after), ["key_c"]);
    let acme_last = store
        .list_keys(Some("acme"), &page(Some("key_c"), 5))
        .await
        .unwrap();
    assert_eq!(ids_of_keys(&acme_last), ["key_e"]);

    let all_after = store
        .list_keys(None, &page(Some("key_b"), 2))
        .await
        .unwrap();
    assert_eq!(ids_of_keys(&all_after), ["key_c", "key_d"]);
    let beta_first = store.list_keys(Some("beta"), &page(None, 1)).await.unwrap();
    assert_eq!(ids_of_keys(&beta_first), ["key_b"]);

    assert!(
        store
            .list_keys(Some("ghost"), &page(None, 0))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_keys(None, &page(Some("key_e"), 0))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn usage_accumulates_and_totals(store: Arc<dyn MetadataStore>) {
    store.record_usage(&[]).await.unwrap();
    assert_eq!(
        store
            .usage_totals(UsageScope::Tenant("acme"), 0)
            .await
            .unwrap(),
        UsageTotals::default()
    );

    let first = [
        usage("key_a", "openai/gpt-4o", T0, 2),
        usage("key_a", "cache", T0, 1),
        usage("key_b", "openai/gpt-4o", T0, 4),
        // The same ledger row twice in one batch adds up too.
        usage("key_b", "openai/gpt-4o", T0, 1),
    ];
    store.record_usage(&first).await.unwrap();
    store
        .record_usage(&[usage("key_a", "openai/gpt-4o", T0, 3)])
        .await
        .unwrap();

    // key_a: 2 + 1 + 3 requests; key_b: 4 + 1. Each request is 120 tokens and 1000 nanos.
    let expect = |requests: u64| UsageTotals {
        requests,
        tokens: requests * 120,
        cost_nanos: requests * 1_000,
    };
    let totals = |scope| {
        let store = Arc::clone(&store);
        async move { store.usage_totals(scope, T0).await.unwrap() }
    };
    assert_eq!(totals(UsageScope::Key("key_a")).await, expect(6));
    assert_eq!(totals(UsageScope::Key("key_b")).await, expect(5));
    assert_eq!(totals(UsageScope::Tenant("acme")).await, expect(11));
    assert_eq!(totals(UsageScope::Tenant("beta")).await, expect(0));
    assert_eq!(totals(UsageScope::Key("key_c")).await, expect(0));

    // A tenant id and a key id that happen to be equal do not mix.
    let mut other = usage("acme", "cache", T0, 7);
    other.tenant_id = "beta".to_owned();
    store.record_usage(&[other]).await.unwrap();
    assert_eq!(totals(UsageScope::Tenant("acme")).await, expect(11));
    assert_eq!(totals(UsageScope::Tenant("beta")).await, expect(7));
    assert_eq!(totals(UsageScope::Key("acme")).await, expect(7));
}

pub async fn usage_totals_respect_since_and_scope(store: Arc<dyn MetadataStore>) {
    let rows: Vec<UsageRecord> = (0..5)
        .map(|hour| usage("key_a", "openai/gpt-4o", T0 + hour * HOUR_MS, 1 << hour))
        .collect();
    store.record_usage(&rows).await.unwrap();
    let mut big = usage("key_a", "anthropic/claude", T0 + 4 * HOUR_MS, 0);
    big.input_tokens = u64::from(u32::MAX) * 4;
    big.output_tokens = 1;
    big.cost_nanos = 1_000_000_000_000_000;
    store.record_usage(&[big.clone()]).await.unwrap();

    let requests_since = |since: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .usage_totals(UsageScope::Tenant("acme"), since)
                .await
                .unwrap()
                .requests
        }
    };
    assert_eq!(requests_since(i64::MIN).await, 31);
    assert_eq!(requests_since(T0).await, 31);
    assert_eq!(
        requests_since(T0 + 1).await,
        30,
        "rows are kept or left out by their hour"
    );
    assert_eq!(requests_since(T0 + 3 * HOUR_MS).await, 8 + 16);
    assert_eq!(requests_since(T0 + 4 * HOUR_MS).await, 16);
    assert_eq!(requests_since(T0 + 5 * HOUR_MS).await, 0);

    let last_hour = store
        .usage_totals(UsageScope::Key("key_a"), T0 + 4 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!(
        last_hour,
        UsageTotals {
            requests: 16,
            tokens: 16 * 120 + big.input_tokens + big.output_tokens,
            cost_nanos: 16 * 1_000 + big.cost_nanos,
        }
    );
}

pub async fn concurrent_usage_sums_exactly(store: Arc<dyn MetadataStore>) {
    const TASKS: u64 = 16;
    const CALLS: u64 = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for call in 0..CALLS {
                // Every batch touches the same two ledger rows, in an order that varies, so
                // that a store locking rows in batch order would deadlock.
                let mut batch = vec![
                    usage("key_a", "openai/gpt-4o", T0, 1),
                    usage("key_b", "openai/gpt-4o", T0, 2),
                    usage(&format!("key_t{task}"), "cache", T0 + HOUR_MS, 1),
                ];
                if (task + call) % 2 == 0 {
                    batch.reverse();
                }
                store.record_usage(&batch).await.unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let calls = TASKS * CALLS;
    let tenant = store
        .usage_totals(UsageScope::Tenant("acme"), 0)
        .await
        .unwrap();
    assert_eq!(tenant.requests, calls * 4);
    assert_eq!(tenant.tokens, calls * 4 * 120);
    assert_eq!(tenant.cost_nanos, calls * 4 * 1_000);
    let key_a = store
        .usage_totals(UsageScope::Key("key_a"), 0)
        .await
        .unwrap();
    assert_eq!(key_a.requests, calls);
    let key_b = store
        .usage_totals(UsageScope::Key("key_b"), 0)
        .await
        .unwrap();
    assert_eq!(key_b.requests, calls * 2);
    let one_task = store
        .usage_totals(UsageScope::Key("key_t3"), 0)
        .await
        .unwrap();
    assert_eq!(one_task.requests, CALLS);
}

pub async fn ping_answers(store: Arc<dyn MetadataStore>) {
    store.ping().await.unwrap();
}
