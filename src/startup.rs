//! Start-up checks and signals.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

/// Errors at start-up.
#[derive(thiserror::Error, Debug)]
pub enum StartupError {
    #[error("CRD {name} is not installed")]
    Missing { name: String },
    #[error("CRD {name} is not Established yet")]
    NotEstablished { name: String },
    #[error("reading CRD {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The CRDs this operator needs.
pub const CRDS: [&str; 2] = [
    "hotlines.crisis.hotline.dev",
    "crisisplans.crisis.hotline.dev",
];

/// Checks that both CRDs are installed and Established.
pub async fn check_crds(client: &Client) -> Result<(), StartupError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        let crd = api
            .get_opt(name)
            .await
            .map_err(|source| StartupError::Kube {
                name: name.into(),
                source,
            })?
            .ok_or_else(|| StartupError::Missing { name: name.into() })?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            return Err(StartupError::NotEstablished { name: name.into() });
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
