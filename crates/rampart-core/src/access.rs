//! The one authorization step. `Access::authorize` is the only constructor of
//! `Authorized<P>`, and every service method that needs a permission takes one, so a
//! decision is made once (by the caller's transport, for the route's scope), recorded
//! once when it refuses, and cannot be skipped or made differently further in.

use std::marker::PhantomData;
use std::sync::Arc;

use rampart_types::{CollectionName, PermissionMarker};

use crate::audit::EventType;
use crate::events::Events;
use crate::refusal::{Area, Refusal, RefusalObserver};
use crate::{CoreError, CoreResult, Principal};

/// Proof that `who` holds permission `P` (on `collection`, for collection-scoped
/// permissions asked about one collection). Only `Access::authorize` makes one.
pub struct Authorized<P: PermissionMarker> {
    who: Principal,
    collection: Option<CollectionName>,
    area: Area,
    _perm: PhantomData<fn() -> P>,
}

impl<P: PermissionMarker> Authorized<P> {
    pub fn who(&self) -> &Principal {
        &self.who
    }

    /// The collection the permission was granted on: for routes scoped to one.
    pub fn collection(&self) -> CoreResult<&CollectionName> {
        self.collection.as_ref().ok_or(CoreError::NotFound("collection"))
    }

    pub fn area(&self) -> Area {
        self.area
    }
}

/// The authorization service: decides, and records what it refuses.
#[derive(Clone)]
pub struct Access {
    events: Events,
    observer: Arc<dyn RefusalObserver>,
}

impl Access {
    pub(crate) fn new(events: Events, observer: Arc<dyn RefusalObserver>) -> Self {
        Self { events, observer }
    }

    /// The authorization decision: `who` must hold `P` (on `collection`, if named) through
    /// a session with the assurance its role requires. A refusal is recorded (audit and
    /// breach detection) before it is returned; if it cannot be recorded, the answer is
    /// "unavailable" instead (fail closed).
    pub async fn authorize<P: PermissionMarker>(
        &self,
        who: Principal,
        collection: Option<CollectionName>,
        area: Area,
    ) -> CoreResult<Authorized<P>> {
        if who.mfa_enrollment_only {
            return Err(CoreError::MfaEnrollmentRequired);
        }
        if who.can(P::PERMISSION, collection.as_ref()) {
            return Ok(Authorized { who, collection, area, _perm: PhantomData });
        }
        Err(self.refuse(&who, area, Refusal::Permission { permission: P::PERMISSION, collection }).await)
    }

    /// A further permission for the same caller and area (a collection-scoped grant for
    /// a named collection, or an extra permission an option needs).
    pub async fn authorize_also<P: PermissionMarker, Q: PermissionMarker>(
        &self,
        held: &Authorized<P>,
        collection: Option<CollectionName>,
    ) -> CoreResult<Authorized<Q>> {
        self.authorize::<Q>(held.who.clone(), collection, held.area).await
    }

    /// Records a refused action and returns the error to answer with (fail closed, as
    /// `authorize`).
    pub(crate) async fn refuse(&self, who: &Principal, area: Area, refusal: Refusal) -> CoreError {
        let details = refusal.details(area);
        self.observer.refused(who, area, &refusal, &details);
        match self
            .events
            .record_event(EventType::PermissionDenied, Some(who.username.as_str()), &who.origin, false, details)
            .await
        {
            Ok(()) => CoreError::Forbidden(refusal.reason()),
            Err(e) => e,
        }
    }
}
