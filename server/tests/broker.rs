//! The broker on its own: fan-out, resume, lag, and publishing that never waits.
use std::time::Duration;

use server::events::broker::Broker;
use tokio::sync::broadcast::error::RecvError;

async fn next(
    sub: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<server::events::event::Event>>,
) -> std::sync::Arc<server::events::event::Event> {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

#[tokio::test]
async fn one_subscriber_receives_a_published_event() {
    let broker = Broker::new(16, 10);
    let mut sub = broker.subscribe(None).unwrap();
    broker.publish("task.created", r#"{"id":"a"}"#.into());
    let event = next(&mut sub.live).await;
    assert_eq!(event.name, "task.created");
    assert_eq!(event.data, r#"{"id":"a"}"#);
    assert_eq!(event.id, format!("{}-1", broker.epoch()));
    // The frame every subscriber is sent, encoded once.
    let frame = format!(
        "event: task.created\nid: {}-1\ndata: {{\"id\":\"a\"}}\n\n",
        broker.epoch()
    );
    assert_eq!(event.frame().as_ref(), frame.as_bytes());
}

#[test]
fn a_frame_carries_each_line_of_its_data_on_a_data_line() {
    let frame = server::events::event::encode_frame("resync", "7-3", "{}\n{}");
    assert_eq!(
        frame.as_ref(),
        b"event: resync\nid: 7-3\ndata: {}\ndata: {}\n\n"
    );
}

#[tokio::test]
async fn every_subscriber_gets_every_event_in_order() {
    let broker = Broker::new(16, 10);
    let mut subs: Vec<_> = (0..5).map(|_| broker.subscribe(None).unwrap()).collect();
    for n in 0..3 {
        broker.publish("task.status", format!("{n}"));
    }
    for sub in &mut subs {
        let got: Vec<String> = [
            next(&mut sub.live).await,
            next(&mut sub.live).await,
            next(&mut sub.live).await,
        ]
        .iter()
        .map(|e| e.data.clone())
        .collect();
        assert_eq!(got, ["0", "1", "2"]);
    }
}

#[tokio::test]
async fn publishing_with_no_subscribers_is_fine_and_is_kept_for_resume() {
    let broker = Broker::new(16, 10);
    broker.publish("task.created", "{}".into());
    broker.publish("task.deleted", "{}".into());
    assert_eq!(broker.newest_id(), format!("{}-2", broker.epoch()));
    let sub = broker
        .subscribe(Some(&format!("{}-0", broker.epoch())))
        .unwrap();
    assert!(sub.resumed);
    assert_eq!(sub.replay.len(), 2);
}

#[tokio::test]
async fn dropping_a_subscription_frees_its_place() {
    let broker = Broker::new(16, 2);
    let a = broker.subscribe(None).unwrap();
    let _b = broker.subscribe(None).unwrap();
    assert!(broker.subscribe(None).is_err(), "the cap holds");
    drop(a);
    assert!(broker.subscribe(None).is_ok(), "a freed place can be taken");
    assert_eq!(
        broker
            .metrics
            .open_streams
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn resume_replays_exactly_what_came_after_the_cursor() {
    let broker = Broker::new(8, 10);
    for n in 1..=5 {
        broker.publish("task.status", format!("{n}"));
    }
    let cursor = format!("{}-2", broker.epoch());
    let sub = broker.subscribe(Some(&cursor)).unwrap();
    assert!(sub.resumed);
    let seqs: Vec<u64> = sub.replay.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(sub.cursor_id, cursor);

    // Too old, from another epoch, from the future, or garbage: not resumed.
    for _ in 0..10 {
        broker.publish("task.status", "{}".into());
    }
    for cursor in [
        format!("{}-2", broker.epoch()),
        "123-4".into(),
        format!("{}-999", broker.epoch()),
        "garbage".into(),
    ] {
        let sub = broker.subscribe(Some(&cursor)).unwrap();
        assert!(!sub.resumed, "{cursor}");
        assert!(sub.replay.is_empty());
    }
}

#[tokio::test]
async fn a_slow_subscriber_loses_the_oldest_while_others_lose_nothing() {
    let broker = Broker::new(4, 10);
    let mut slow = broker.subscribe(None).unwrap();
    let mut fast = broker.subscribe(None).unwrap();
    let mut fast_got = Vec::new();
    for n in 0..10 {
        broker.publish("task.status", format!("{n}"));
        fast_got.push(next(&mut fast.live).await.data.clone());
    }
    assert_eq!(fast_got.len(), 10, "the fast subscriber got every event");
    // The fan-out has sent all ten: the slow one is told how many it lost, then gets the rest.
    match tokio::time::timeout(Duration::from_secs(5), slow.live.recv())
        .await
        .unwrap()
    {
        Err(RecvError::Lagged(missed)) => assert_eq!(missed, 6),
        other => panic!("expected a lag, got {other:?}"),
    }
    let rest: Vec<String> = [next(&mut slow.live).await, next(&mut slow.live).await]
        .iter()
        .map(|e| e.data.clone())
        .collect();
    assert_eq!(rest, ["6", "7"]);
}
