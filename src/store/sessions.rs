//! The session rule of [`super::Store::insert_batch`], shared by every backend: which session
//! each event of a batch belongs to, given each visitor's latest stored event.
//!
//! A visitor's current session is not kept anywhere: it is the session of the visitor's latest
//! event (the greatest `ts_ms`, the last stored among equal times), which the backends read
//! from their index on `(visitor_id, ts_ms)`. So an event costs no write beyond its own row,
//! and deleting events (retention, erasing a contact) leaves no session state behind.

use super::{Event, SESSION_IDLE_MS};

/// A visitor's latest event: its session (`None` for events stored before sessions were
/// assigned) and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Latest {
    pub session_id: Option<String>,
    pub ts_ms: i64,
}

/// The session to store with each event of `events` (by index): `None` where the event keeps
/// its own `session_id` or has no visitor.
///
/// `stored` gives a visitor's latest stored event; it is called at most once per visitor, and
/// only for visitors with an event to assign and none marked [`Event::new_visitor`] (whose id
/// was created by this batch's beacon, so nothing can be stored for it).
///
/// Each visitor's events are taken in `ts_ms` order (a stable sort, so equal times keep batch
/// order, which is the order they are stored in), each as if the ones before it were already
/// stored:
/// - an event without `session_id` continues the session of the visitor's latest event, unless
///   there is none, it has no session, or the event is more than [`SESSION_IDLE_MS`] after it;
///   then it starts a new session with a fresh time-ordered id;
/// - any event (with its own `session_id` or an assigned one) becomes the visitor's latest
///   unless an earlier-stored one has a greater `ts_ms`.
pub(super) fn assign<E>(
    events: &[Event],
    mut stored: impl FnMut(&str) -> Result<Option<Latest>, E>,
) -> Result<Vec<Option<String>>, E> {
    let mut assigned = vec![None; events.len()];
    // The events with a visitor, grouped by visitor and in time order within each: a sort
    // rather than a map from visitor to events, which would hash every id several times.
    let mut order: Vec<(&str, usize)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((e.visitor_id.as_deref()?, i)))
        .collect();
    order.sort_by(|a, b| a.0.cmp(b.0).then(events[a.1].ts_ms.cmp(&events[b.1].ts_ms)));
    for run in order.chunk_by(|a, b| a.0 == b.0) {
        let visitor = run[0].0;
        let run = run.iter().map(|&(_, i)| i);
        if run.clone().all(|i| events[i].session_id.is_some()) {
            continue; // nothing to assign: own sessions only
        }
        let mut latest = if run.clone().any(|i| events[i].new_visitor) {
            None
        } else {
            stored(visitor)?
        };
        for i in run {
            let e = &events[i];
            let session = match &e.session_id {
                Some(own) => own.clone(),
                None => {
                    let continued = latest.as_ref().and_then(|l| {
                        let idle = e.ts_ms.saturating_sub(l.ts_ms) > SESSION_IDLE_MS;
                        l.session_id.clone().filter(|_| !idle)
                    });
                    let session = continued.unwrap_or_else(new_session_id);
                    assigned[i] = Some(session.clone());
                    session
                }
            };
            if latest.as_ref().is_none_or(|l| e.ts_ms >= l.ts_ms) {
                latest = Some(Latest {
                    session_id: Some(session),
                    ts_ms: e.ts_ms,
                });
            }
        }
    }
    Ok(assigned)
}

/// A session id: a UUID string in the time-ordered v7 layout, so the ids of new sessions sort
/// by time.
fn new_session_id() -> String {
    crate::identity::time_ordered_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventKind;

    fn event(visitor: Option<&str>, ts_ms: i64, session: Option<&str>) -> Event {
        Event {
            visitor_id: visitor.map(str::to_owned),
            session_id: session.map(str::to_owned),
            ..Event::new(EventKind::Pageview, ts_ms, "shop", "https://s/", "/")
        }
    }

    fn stored_none(_: &str) -> Result<Option<Latest>, ()> {
        Ok(None)
    }

    const MIN: i64 = 60 * 1000;

    #[test]
    fn a_latest_event_without_session_starts_a_new_one() {
        let events = [event(Some("v"), 10 * MIN, None)];
        let old = |_: &str| -> Result<_, ()> {
            Ok(Some(Latest {
                session_id: None,
                ts_ms: 9 * MIN,
            }))
        };
        let got = assign(&events, old).unwrap();
        assert!(got[0].is_some());
        let cont = |_: &str| -> Result<_, ()> {
            Ok(Some(Latest {
                session_id: Some("s".into()),
                ts_ms: 9 * MIN,
            }))
        };
        assert_eq!(assign(&events, cont).unwrap(), [Some("s".to_owned())]);
    }

    #[test]
    fn an_own_session_becomes_the_latest_and_is_continued() {
        let events = [
            event(Some("v"), 0, None),
            event(Some("v"), MIN, Some("tab")),
            event(Some("v"), 2 * MIN, None),
            // Older than the latest: does not replace it.
            event(Some("v"), MIN / 2, Some("old")),
            event(Some("v"), 3 * MIN, None),
        ];
        let got = assign(&events, stored_none).unwrap();
        assert!(got[0].is_some() && got[0].as_deref() != Some("tab"));
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_deref(), Some("tab"));
        assert_eq!(got[3], None);
        assert_eq!(got[4].as_deref(), Some("tab"));
    }

    #[test]
    fn stored_is_asked_once_per_visitor_that_needs_a_session() {
        let events = [
            event(Some("a"), 3, None),
            event(Some("a"), 1, None),
            event(Some("b"), 2, Some("own")),
            event(None, 4, None),
        ];
        let mut asked = Vec::new();
        let got = assign(&events, |v: &str| -> Result<_, ()> {
            asked.push(v.to_owned());
            Ok(None)
        })
        .unwrap();
        // `b` has no event to assign.
        assert_eq!(asked, ["a"]);
        assert_eq!(got[0], got[1]);
        assert_eq!((got[2].as_ref(), got[3].as_ref()), (None, None));
    }

    /// A visitor created by the batch's own beacon has nothing stored to look up.
    #[test]
    fn a_new_visitor_is_not_looked_up() {
        let mut first = event(Some("n"), 5, None);
        first.new_visitor = true;
        let got = assign(
            &[event(Some("n"), 6, None), first],
            |_: &str| -> Result<Option<Latest>, ()> { panic!("looked up a new visitor") },
        )
        .unwrap();
        assert!(got[0].is_some() && got[0] == got[1]);
    }
}
