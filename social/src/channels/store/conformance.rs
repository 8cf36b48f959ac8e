//! The conformance suite every [`ChannelStore`] backend must pass.
//!
//! Each check uses fresh random names and users, so the suite can run against a shared external
//! database.

use std::sync::Arc;

use uuid::Uuid;

use super::ChannelStore;
use crate::channels::{Ban, Channel, ChannelError};
use crate::id::UserId;

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn name() -> String {
    format!("c{}", Uuid::new_v4().simple())
}

fn channel(name: &str, owner: UserId) -> Channel {
    Channel {
        name: name.to_owned(),
        owner,
        private: false,
        key_hash: "00".repeat(32),
        key_issued_at: 1,
        created_at: 1,
        slow_mode_secs: 0,
        moderators: Vec::new(),
    }
}

/// Runs every check.
pub async fn run<S: ChannelStore>(s: Arc<S>) {
    create_get_update_delete(&*s).await;
    owner_cap(&*s).await;
    concurrent_creates_one_winner(s.clone()).await;
    bans(&*s).await;
}

/// The life of one channel.
pub async fn create_get_update_delete<S: ChannelStore + ?Sized>(s: &S) {
    let (a, b) = (user(), user());
    let n = name();
    assert_eq!(s.get(&n).await.unwrap(), None);
    let c = channel(&n, a);
    s.create(c.clone(), 10).await.unwrap();
    assert_eq!(s.get(&n).await.unwrap(), Some(c.clone()));
    assert_eq!(s.create(channel(&n, b), 10).await, Err(ChannelError::Taken));
    assert_eq!(s.create(c.clone(), 10).await, Err(ChannelError::Taken));
    assert_eq!(s.owned_by(a).await.unwrap(), vec![c.clone()]);
    assert_eq!(s.owned_by(b).await.unwrap(), vec![]);

    let mut c2 = c.clone();
    c2.private = true;
    c2.key_hash = "11".repeat(32);
    c2.slow_mode_secs = 5;
    c2.moderators = vec![b];
    s.update(c2.clone()).await.unwrap();
    assert_eq!(s.get(&n).await.unwrap(), Some(c2.clone()));
    // An update cannot move a channel to another owner, nor create one.
    assert_eq!(s.update(channel(&n, b)).await, Err(ChannelError::NotFound));
    assert_eq!(
        s.update(channel(&name(), a)).await,
        Err(ChannelError::NotFound)
    );

    s.put_ban(
        &n,
        Ban {
            user: b,
            until: None,
        },
    )
    .await
    .unwrap();
    assert!(s.delete(&n).await.unwrap());
    assert!(!s.delete(&n).await.unwrap());
    assert_eq!(s.get(&n).await.unwrap(), None);
    assert_eq!(s.owned_by(a).await.unwrap(), vec![]);
    assert_eq!(s.bans(&n).await.unwrap(), vec![]);
    // The name is free again.
    s.create(channel(&n, b), 10).await.unwrap();
    assert_eq!(s.owned_by(b).await.unwrap().len(), 1);
    s.delete(&n).await.unwrap();
}

/// `max_owned` caps the channels of one owner, not of others.
pub async fn owner_cap<S: ChannelStore + ?Sized>(s: &S) {
    let (a, b) = (user(), user());
    let mut names: Vec<String> = (0..3).map(|_| name()).collect();
    names.sort();
    for n in &names {
        s.create(channel(n, a), 3).await.unwrap();
    }
    assert_eq!(
        s.create(channel(&name(), a), 3).await,
        Err(ChannelError::TooMany(3))
    );
    s.create(channel(&name(), b), 3).await.unwrap();
    let listed: Vec<String> = s
        .owned_by(a)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(listed, names);
    s.delete(&names[0]).await.unwrap();
    s.create(channel(&name(), a), 3).await.unwrap();
}

/// Many users racing for one name: exactly one gets it.
pub async fn concurrent_creates_one_winner<S: ChannelStore>(s: Arc<S>) {
    let n = name();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            let c = channel(&n, user());
            tokio::spawn(async move { s.create(c, 10).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(ChannelError::Taken) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    let owner = s.get(&n).await.unwrap().unwrap().owner;
    assert_eq!(s.owned_by(owner).await.unwrap().len(), 1);
}

/// Bans are per room, replaced by user, and lifted.
pub async fn bans<S: ChannelStore + ?Sized>(s: &S) {
    let (n, m) = (name(), name());
    let (a, b, c) = (user(), user(), user());
    s.create(channel(&n, a), 10).await.unwrap();
    s.put_ban(
        &n,
        Ban {
            user: b,
            until: None,
        },
    )
    .await
    .unwrap();
    s.put_ban(
        &n,
        Ban {
            user: c,
            until: Some(5),
        },
    )
    .await
    .unwrap();
    s.put_ban(
        &n,
        Ban {
            user: c,
            until: Some(9),
        },
    )
    .await
    .unwrap();
    let mut got = s.bans(&n).await.unwrap();
    got.sort_by_key(|x| x.until);
    assert_eq!(
        got,
        vec![
            Ban {
                user: b,
                until: None
            },
            Ban {
                user: c,
                until: Some(9)
            }
        ]
    );
    assert_eq!(s.bans(&m).await.unwrap(), vec![]);
    assert!(s.lift_ban(&n, b).await.unwrap());
    assert!(!s.lift_ban(&n, b).await.unwrap());
    assert_eq!(
        s.bans(&n).await.unwrap(),
        vec![Ban {
            user: c,
            until: Some(9)
        }]
    );
    s.delete(&n).await.unwrap();
}
