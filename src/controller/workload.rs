//! [`Cached`]: what the operator's caches hold of a Deployment or
//! StatefulSet.

use std::borrow::Cow;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The parts of an `apps/v1` workload `K` the controllers read: metadata
/// (owners, our applied-hash annotation, resourceVersion), `spec.replicas` and
/// `status.readyReplicas`. The watch decodes straight into it, so nothing
/// else of the object (the pod template above all) is ever allocated.
///
/// Why not `K` with its template emptied: a `Deployment` is 2.4 KiB of
/// inline structs even when empty, and the cache holds every Deployment in
/// the watched namespaces (docs/BENCHMARKS.md, "Footprint").
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(bound = "")]
pub struct Cached<K> {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CachedSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CachedStatus>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

/// `spec` of a [`Cached`] workload.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// `status` of a [`Cached`] workload.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}

impl<K> Cached<K> {
    /// `spec.replicas`.
    pub fn replicas(&self) -> Option<i32> {
        self.spec.as_ref()?.replicas
    }

    /// `status.readyReplicas`.
    pub fn ready_replicas(&self) -> Option<i32> {
        self.status.as_ref()?.ready_replicas
    }
}

impl<K: serde::Serialize> Cached<K> {
    /// The cached view of a full object (tests, and objects returned by a
    /// write).
    pub fn of(obj: &K) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(obj)?)
    }
}

impl<K> kube::Resource for Cached<K>
where
    K: kube::Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use kube::Resource;
    use serde_json::json;

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "care-gateway", "namespace": "ns", "resourceVersion": "7",
                         "annotations": {"a": "b"},
                         "ownerReferences": [{"apiVersion": "crisis.hotline.dev/v1alpha1", "kind": "Hotline",
                                              "name": "care", "uid": "u1", "controller": true}]},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "gw"}},
                     "template": {"metadata": {"labels": {"app": "gw"}},
                                  "spec": {"containers": [{"name": "gw", "image": "gw:1"}]}}},
            "status": {"replicas": 4, "readyReplicas": 3,
                       "conditions": [{"type": "Available", "status": "True"}]},
        }))
        .expect("deployment")
    }

    #[test]
    fn keeps_what_the_controllers_read() {
        let d = deployment();
        let c = Cached::<Deployment>::of(&d).expect("cached");
        assert_eq!(c.metadata, d.metadata);
        assert_eq!(c.replicas(), Some(4));
        assert_eq!(c.ready_replicas(), Some(3));
    }

    #[test]
    fn addresses_the_same_api_as_the_full_kind() {
        assert_eq!(
            Cached::<Deployment>::url_path(&(), Some("ns")),
            Deployment::url_path(&(), Some("ns"))
        );
        assert_eq!(
            Cached::<StatefulSet>::url_path(&(), None),
            StatefulSet::url_path(&(), None)
        );
        assert_eq!(Cached::<Deployment>::kind(&()), "Deployment");
    }

    #[test]
    fn is_a_fraction_of_the_full_object_in_memory() {
        let full = std::mem::size_of::<Deployment>();
        let cached = std::mem::size_of::<Cached<Deployment>>();
        assert!(cached * 4 < full, "cached {cached} B vs full {full} B");
    }
}
