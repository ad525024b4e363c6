//! Tests of the public [`Revocations`] API, in memory and on disk.

use super::*;
use crate::config::OnStoreDown;
use std::path::{Path, PathBuf};
use std::time::Instant;

const T: u64 = 1_700_000_000;
const LEEWAY: Duration = Duration::from_secs(30);
const LIFETIME: Duration = Duration::from_secs(3600);
/// A watermark lives `max_token_lifetime + 2 * leeway + 1` past itself.
const WM_TTL: u64 = 3661;

fn cfg(path: Option<&Path>, capacity: u64) -> RevocationConfig {
    RevocationConfig {
        store: StoreKind::Local,
        path: path.map(Path::to_path_buf),
        capacity,
        redis_url: None,
        redis_prefix: "revgate:".into(),
        on_store_down: OnStoreDown::Deny,
        max_staleness: crate::config::DEFAULT_MAX_STALENESS,
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(Vec::new()))
}

async fn open(
    path: Option<&Path>,
    capacity: u64,
    clock: &Arc<ManualClock>,
) -> (Arc<Revocations>, Arc<Metrics>) {
    let m = metrics();
    let r = Revocations::open_with_clock(
        &cfg(path, capacity),
        Policy::new(LEEWAY, LIFETIME),
        Arc::clone(&m),
        clock.clone(),
    )
    .await
    .expect("open revocation store");
    (r, m)
}

fn key(n: u128) -> RevocationKey {
    RevocationKey::from_jti(&format!("jti-{n}"))
}

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "revgate-revocation-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn revoke_then_get_and_is_revoked() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, m) = open(None, 100, &clock).await;
    assert!(!r.is_revoked(key(1), Some("alice"), Some(T)));
    r.revoke(key(1), T + 60).await.expect("revoke");
    assert!(r.is_revoked(key(1), Some("alice"), Some(T)));
    assert!(r.is_revoked(key(1), None, None));
    assert!(!r.is_revoked(key(2), Some("alice"), Some(T)));
    assert_eq!(r.get(key(1)), Some(T + 60));
    assert_eq!(r.get(key(2)), None);
    assert_eq!(r.len(), 1);
    assert_eq!(m.get(Counter::Revocations), 1);
    assert!(m.render().contains("revgate_revocation_entries 1"));
}

#[tokio::test]
async fn revoke_is_idempotent_and_only_extends() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("idempotent");
    let (r, m) = open(Some(&dir.0), 100, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    let commits = r.durable_commits();
    assert_eq!(commits, 1);
    r.revoke(key(1), T + 60).await.expect("again");
    r.revoke(key(1), T + 30).await.expect("earlier");
    assert_eq!(r.durable_commits(), commits, "no-op revokes skip the disk");
    assert_eq!(r.get(key(1)), Some(T + 60));
    r.revoke(key(1), T + 90).await.expect("later");
    assert_eq!(r.get(key(1)), Some(T + 90));
    r.run_pending_tasks();
    assert_eq!(r.len(), 1);
    assert_eq!(m.get(Counter::Revocations), 2);
    // An already expired token needs no entry.
    r.revoke(key(2), T).await.expect("expired");
    assert_eq!(r.get(key(2)), None);
    r.close().await;
}

#[tokio::test]
async fn lift_removes_a_revocation() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, m) = open(None, 100, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    assert_eq!(r.lift(key(1)).await, Ok(true));
    assert!(!r.is_revoked(key(1), None, None));
    assert_eq!(r.get(key(1)), None);
    assert_eq!(r.lift(key(1)).await, Ok(false));
    assert_eq!(r.lift(key(9)).await, Ok(false));
    assert_eq!(m.get(Counter::Lifted), 1);
    r.run_pending_tasks();
    assert_eq!(r.len(), 0);
}

#[tokio::test]
async fn watermark_revokes_tokens_issued_at_or_before_it() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, m) = open(None, 100, &clock).await;
    let k = key(1);
    assert_eq!(r.revoke_subject("alice", T).await, Ok(T + WM_TTL));
    assert!(r.is_revoked(k, Some("alice"), Some(T - 100)));
    assert!(r.is_revoked(k, Some("alice"), Some(T)), "same second");
    assert!(!r.is_revoked(k, Some("alice"), Some(T + 1)), "later second");
    assert!(r.is_revoked(k, Some("alice"), None), "no iat");
    assert!(
        !r.is_revoked(k, Some("bob"), Some(T - 100)),
        "other subject"
    );
    assert!(!r.is_revoked(k, None, Some(T - 100)), "no subject");
    assert_eq!(m.get(Counter::Watermarks), 1);

    // Never lowered: an earlier watermark keeps the later one.
    assert_eq!(r.revoke_subject("alice", T - 50).await, Ok(T + WM_TTL));
    assert!(r.is_revoked(k, Some("alice"), Some(T)));
    assert_eq!(r.watermark("alice"), Some((T, T + WM_TTL)));
    // Raised by a later one; still one record per subject.
    assert_eq!(r.revoke_subject("alice", T + 10).await, Ok(T + 10 + WM_TTL));
    assert!(r.is_revoked(k, Some("alice"), Some(T + 10)));
    assert!(!r.is_revoked(k, Some("alice"), Some(T + 11)));
    r.run_pending_tasks();
    assert_eq!(r.len(), 1);
}

#[tokio::test]
async fn entries_leave_at_expires_at_by_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, _) = open(None, 100, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    r.revoke_subject("alice", T).await.expect("watermark");
    clock.set(T + 59);
    assert!(r.is_revoked(key(1), None, None));
    clock.set(T + 60);
    assert!(!r.is_revoked(key(1), None, None));
    assert_eq!(r.get(key(1)), None);
    assert_eq!(r.lift(key(1)).await, Ok(false), "nothing live to lift");
    clock.set(T + WM_TTL - 1);
    assert!(r.is_revoked(key(2), Some("alice"), Some(T)));
    clock.set(T + WM_TTL);
    assert!(!r.is_revoked(key(2), Some("alice"), Some(T)));
    assert!(!r.is_revoked(key(2), Some("alice"), None));
}

#[tokio::test]
async fn expired_entries_are_swept_and_free_their_slots() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, _) = open(None, 2, &clock).await;
    r.revoke(key(1), T + 1).await.expect("revoke");
    r.revoke(key(2), T + 3600).await.expect("revoke");
    assert_eq!(r.len(), 2);
    assert_eq!(r.revoke(key(3), T + 3600).await, Err(StoreError::Full));
    r.run_pending_tasks();
    assert!(r.memory.holds(key(1)), "swept before its expires_at");
    clock.set(T + 1);
    r.run_pending_tasks();
    assert!(!r.memory.holds(key(1)), "expired entry still held");
    assert_eq!(r.len(), 1);
    assert!(r.memory.holds(key(2)));
    r.revoke(key(3), T + 3600)
        .await
        .expect("slot freed by expiry");
}

#[tokio::test]
async fn full_blocklist_refuses_new_entries_and_evicts_nothing() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, m) = open(None, 3, &clock).await;
    for n in 0..3 {
        r.revoke(key(n), T + 60).await.expect("under capacity");
    }
    assert_eq!(r.revoke(key(3), T + 60).await, Err(StoreError::Full));
    assert_eq!(r.revoke_subject("alice", T).await, Err(StoreError::Full));
    assert_eq!(m.get(Counter::StoreFull), 2);
    r.run_pending_tasks();
    for n in 0..3 {
        assert!(r.is_revoked(key(n), None, None), "entry {n} was evicted");
    }
    assert!(!r.is_revoked(key(3), None, None));
    assert_eq!(r.len(), 3);
    // Renewing a held entry needs no new slot.
    r.revoke(key(0), T + 120).await.expect("extend at capacity");
    // A lift frees one.
    assert_eq!(r.lift(key(1)).await, Ok(true));
    r.revoke(key(3), T + 60).await.expect("slot freed by lift");
}

#[tokio::test]
async fn closed_store_refuses_writes_and_keeps_answering() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("closed");
    let (r, m) = open(Some(&dir.0), 100, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    r.close().await;
    assert!(matches!(
        r.revoke(key(2), T + 60).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        r.lift(key(1)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(!r.is_revoked(key(2), None, None));
    assert!(r.is_revoked(key(1), None, None));
    assert_eq!(r.len(), 1, "refused write released its slot");
    assert_eq!(
        m.get(Counter::StoreErrors),
        0,
        "closed is not a store error"
    );
}

#[tokio::test]
async fn reopen_keeps_revocations_watermarks_and_lifts() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("reopen");
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    for n in 0..5 {
        r.revoke(key(n), T + 60 + n as u64).await.expect("revoke");
    }
    r.revoke_subject("alice", T).await.expect("watermark");
    r.revoke_subject("alice", T - 10)
        .await
        .expect("lower is ignored");
    assert_eq!(r.lift(key(2)).await, Ok(true));
    r.close().await;
    drop(r);

    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    for n in [0, 1, 3, 4] {
        assert_eq!(r.get(key(n)), Some(T + 60 + n as u64), "key {n} lost");
    }
    assert!(!r.is_revoked(key(2), None, None), "lifted key came back");
    assert_eq!(r.watermark("alice"), Some((T, T + WM_TTL)));
    assert!(r.is_revoked(key(9), Some("alice"), Some(T)));
    assert_eq!(r.len(), 5);
    r.close().await;
}

#[tokio::test]
async fn dropped_without_close_loses_nothing_acknowledged() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("dropped");
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    drop(r);
    // The writer thread releases the file shortly after the last handle goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        match Revocations::open_with_clock(
            &cfg(Some(&dir.0), 100),
            Policy::new(LEEWAY, LIFETIME),
            metrics(),
            clock.clone(),
        )
        .await
        {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert_eq!(r.get(key(1)), Some(T + 60));
    r.close().await;
}

#[tokio::test]
async fn expired_records_are_not_loaded_and_are_swept_from_disk() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("sweep");
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    r.revoke(key(1), T + 10).await.expect("short");
    r.revoke(key(2), T + 1000).await.expect("long");
    r.revoke(key(3), T + 10).await.expect("short");
    r.revoke(key(3), T + 20)
        .await
        .expect("extended (index entry moves)");
    r.revoke_subject("alice", T).await.expect("watermark");
    r.close().await;
    assert_eq!(local::count_on_disk(&dir.0).ok(), Some((3, 1)));

    clock.set(T + 30);
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    assert_eq!(r.get(key(1)), None);
    assert_eq!(r.get(key(3)), None);
    assert_eq!(r.get(key(2)), Some(T + 1000));
    assert_eq!(r.len(), 2, "expired records were loaded");
    assert_eq!(r.sweep().await, Ok(2));
    assert_eq!(r.sweep().await, Ok(0));
    r.close().await;
    assert_eq!(local::count_on_disk(&dir.0).ok(), Some((1, 1)));

    clock.set(T + WM_TTL);
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    assert_eq!(r.sweep().await, Ok(2), "revocation and watermark");
    r.close().await;
    assert_eq!(local::count_on_disk(&dir.0).ok(), Some((0, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revokes_share_commits() {
    const N: u128 = 256;
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("group");
    let (r, m) = open(Some(&dir.0), 1000, &clock).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..N {
        let r = Arc::clone(&r);
        tasks.spawn(async move { r.revoke(key(n), T + 60).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.ok(), Some(Ok(())));
    }
    let commits = r.durable_commits();
    eprintln!("{N} concurrent revokes in {commits} commits");
    assert!(
        commits >= 1 && commits < N as u64,
        "{commits} commits for {N}"
    );
    assert_eq!(m.get(Counter::Revocations), N as u64);
    assert!((0..N).all(|n| r.is_revoked(key(n), None, None)));
    r.close().await;
    let (r, _) = open(Some(&dir.0), 1000, &clock).await;
    assert!((0..N).all(|n| r.is_revoked(key(n), None, None)));
    r.close().await;
}

#[tokio::test]
async fn apply_updates_memory_without_writing_back() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("apply");
    let (r, _) = open(Some(&dir.0), 1, &clock).await;
    r.revoke(key(1), T + 60).await.expect("revoke");
    r.apply(&Record::Revoke {
        key: key(2),
        expires_at: T + 60,
    });
    assert!(r.is_revoked(key(2), None, None), "applied beyond capacity");
    assert_eq!(r.durable_commits(), 1);
    r.apply(&Record::Lift { key: key(2) });
    assert!(!r.is_revoked(key(2), None, None));
    r.close().await;
    assert_eq!(local::count_on_disk(&dir.0).ok(), Some((1, 0)));
}

#[tokio::test]
async fn redis_store_with_unusable_url_is_an_open_error() {
    let mut c = cfg(None, 10);
    c.store = StoreKind::Redis;
    c.redis_url = Some("redis://".into());
    let r = Revocations::open(&c, Policy::new(LEEWAY, LIFETIME), metrics()).await;
    assert!(matches!(r, Err(StoreOpenError::Redis(_))), "{:?}", r.err());
}

#[tokio::test]
async fn unusable_path_is_an_open_error() {
    let dir = TempDir::new("file");
    std::fs::create_dir_all(&dir.0).expect("mkdir");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let r = Revocations::open(
        &cfg(Some(&file), 10),
        Policy::new(LEEWAY, LIFETIME),
        metrics(),
    )
    .await;
    assert!(
        matches!(r, Err(StoreOpenError::CreateDir { .. })),
        "{:?}",
        r.err()
    );
}

/// A verified token's claims, as verification would build them.
fn claims(token: &str, jti: Option<&str>, sub: &str, iat: Option<u64>, exp: u64) -> Claims {
    Claims {
        sub: Some(sub.into()),
        jti: jti.map(Into::into),
        sid: None,
        exp,
        nbf: None,
        iat,
        scopes: Vec::new(),
        revocation: TokenKeys::for_token(jti, token),
        session: None,
        fingerprint: None,
        log_plain: true,
        raw: Default::default(),
    }
}

/// Revoking a token without `jti` records its signing input: the same
/// token with any other signature bytes is refused too, and only one entry
/// is written (no legacy key with a local store).
#[tokio::test]
async fn revoke_token_keys_a_token_without_jti_by_its_signing_input() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, _) = open(None, 100, &clock).await;
    let c = claims("aGVhZA.cGF5bG9hZA.c2lnMQ", None, "alice", Some(T), T + 60);
    let twin = claims("aGVhZA.cGF5bG9hZA.c2lnMg", None, "alice", Some(T), T + 60);
    assert!(!r.check(&twin));
    assert_eq!(r.revoke_token(&c, Via::Logout).await, Ok(T + 60 + 30 + 1));
    assert!(r.check(&c));
    assert!(r.check(&twin));
    r.run_pending_tasks();
    assert_eq!(r.len(), 1);
}

/// `revoke_jti` refuses what can never be stored, as a 400 would.
#[tokio::test]
async fn revoke_jti_refuses_an_empty_jti_and_a_past_expiry() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, _) = open(None, 100, &clock).await;
    assert!(matches!(
        r.revoke_jti("", T + 60, Via::Admin).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        r.revoke_jti("j", T, Via::Admin).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(r.revoke_jti("j", T + 60, Via::Admin).await, Ok(()));
    assert_eq!(r.jti_expiry("j"), Some(T + 60));
    assert_eq!(r.lift_jti("j", Via::Admin).await, Ok(true));
    assert_eq!(r.jti_expiry("j"), None);
}

/// Pins a fixed bug: a logout-all must hold for the whole life of every token
/// it covers: any `iat` up to the watermark (an issuer up to `leeway`
/// ahead included), the longest lifetime verification accepts, every
/// second until the token is refused as expired; and tokens without `iat`
/// that were acceptable at the logout-all.
#[tokio::test]
async fn logout_all_outlives_every_token_it_covers() {
    let clock = Arc::new(ManualClock::new(T));
    let (r, _) = open(None, 100, &clock).await;
    let policy = *r.policy();
    let before = r.watermark_subject("alice", Via::Logout).await.expect("wm");
    assert_eq!(before, T + 30, "the watermark covers an issuer 30 s ahead");
    let longest = LIFETIME.as_secs() + 30;
    let mut tokens: Vec<Claims> = [T - longest, T - 1, T, T + 25, T + 30]
        .iter()
        .map(|&iat| claims("h.p.s", None, "alice", Some(iat), iat + longest))
        .collect();
    tokens.push(claims("h.p.s", None, "alice", None, T + longest));
    for c in &tokens {
        assert!(policy.lifetime_ok(c.exp, c.iat, T), "{c:?} is acceptable");
        // Every second the token could be accepted (now <= exp + leeway).
        for now in T..=c.exp + 30 {
            clock.set(now);
            assert!(r.check(c), "{:?} accepted again at T+{}", c.iat, now - T);
        }
    }
    clock.set(T + 31);
    let after = claims("h.p.s", None, "alice", Some(T + 31), T + 600);
    assert!(
        !r.check(&after),
        "a token issued after the watermark passes"
    );
}

/// Revocations the previous build wrote (whole-token keys, here through the
/// store API) keep refusing their tokens after a restart with this build;
/// the legacy key stops being checked once the window ends, the later of
/// `horizon(start)` and the entries' own expiry.
#[tokio::test]
async fn legacy_keys_are_checked_until_the_window_closes() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("legacy");
    let token = "aGVhZA.cGF5bG9hZA.c2lnMQ";
    let legacy = RevocationKey::legacy_from_token(token);
    let c = claims(token, None, "alice", Some(T), T + 60);
    let policy = Policy::new(LEEWAY, LIFETIME);
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    // As the previous build wrote it: the whole token's digest.
    r.revoke(legacy, T + 91).await.expect("legacy revoke");
    r.close().await;
    drop(r);

    let (r, _) = reopen(&dir, &clock).await;
    assert_eq!(r.legacy_window(), (policy.horizon(T), true));
    assert!(
        r.check(&c),
        "a revocation stored by the previous build holds"
    );
    // A legacy entry living past the window (written after start, e.g. by
    // hand here) is ignored once the window has closed.
    r.revoke(legacy, policy.horizon(T) + 100)
        .await
        .expect("long");
    clock.set(policy.horizon(T) - 1);
    r.housekeeping_tick(1);
    assert!(r.check(&c));
    clock.set(policy.horizon(T));
    r.housekeeping_tick(2);
    assert_eq!(r.legacy_window(), (policy.horizon(T), false));
    assert!(r.get(legacy).is_some());
    assert!(!r.check(&c), "the window is closed");
    r.close().await;
    drop(r);

    // Started again at T, the window reaches the stored entry's own expiry.
    clock.set(T);
    let (r, _) = reopen(&dir, &clock).await;
    assert_eq!(
        r.legacy_window(),
        (policy.horizon(T) + 100, true),
        "bounded by the longest-lived stored entry"
    );
    assert!(r.check(&c));
    r.close().await;
}

/// Opens `dir` again once the previous handle's writer thread has let go.
async fn reopen(dir: &TempDir, clock: &Arc<ManualClock>) -> (Arc<Revocations>, Arc<Metrics>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics();
        match Revocations::open_with_clock(
            &cfg(Some(&dir.0), 100),
            Policy::new(LEEWAY, LIFETIME),
            Arc::clone(&m),
            clock.clone(),
        )
        .await
        {
            Ok(r) => return (r, m),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// A token's claims carrying session `sid`.
fn with_session(mut c: Claims, sid: &str) -> Claims {
    c.sid = Some(sid.into());
    c.session = Some(RevocationKey::from_sid(sid));
    c
}

/// A revoked session refuses every token carrying its `sid`, and no other;
/// it lives until the horizon (every token of the session acceptable now
/// has expired), is durable, and leaves by itself.
#[tokio::test]
async fn a_revoked_session_refuses_its_tokens_until_the_horizon() {
    let clock = Arc::new(ManualClock::new(T));
    let dir = TempDir::new("sessions");
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    let a = with_session(claims("t.a.s", Some("a"), "alice", Some(T), T + 60), "s-1");
    let b = with_session(claims("t.b.s", Some("b"), "alice", Some(T), T + 60), "s-1");
    let other = with_session(claims("t.c.s", Some("c"), "alice", Some(T), T + 60), "s-2");
    let plain = claims("t.d.s", Some("d"), "alice", Some(T), T + 60);
    assert!(!r.check(&a));
    let horizon = T + 3600 + 3 * 30 + 1;
    assert_eq!(r.revoke_session("s-1", Via::Admin).await, Ok(horizon));
    assert_eq!(r.session_expiry("s-1"), Some(horizon));
    assert!(r.check(&a) && r.check(&b));
    assert!(!r.check(&other) && !r.check(&plain));
    // A session is not a jti of the same text.
    assert_eq!(r.jti_expiry("s-1"), None);
    assert_eq!(
        r.revoke_session("", Via::Admin).await,
        Err(StoreError::Invalid(
            "sid is empty or longer than 4096 bytes"
        ))
    );
    // Durable: a reopened store still refuses the session.
    r.close().await;
    drop(r);
    let (r, _) = open(Some(&dir.0), 100, &clock).await;
    assert!(r.check(&a));
    // Gone at the horizon.
    clock.set(horizon);
    r.run_pending_tasks();
    assert!(!r.check(&a));
}
