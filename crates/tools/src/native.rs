//! The real [`Connector`]: a native Sheen client of the tool's own, mounted from the spec of
//! the FUSE mount (or from `--mgs`/`--spec`), on a small tokio runtime.
//!
//! A tool should answer promptly even when a server is down, so the client gets shorter
//! retry limits than a mount does, and mounting has an overall deadline.

use std::time::Duration;

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_wire::msg::FsConfig;

use crate::error::ToolError;
use crate::source::{Connector, Filesystem, TargetStatfs};

/// How long mounting (config from the MGS, root from MDT0) may take in all.
const MOUNT_DEADLINE: Duration = Duration::from_secs(30);
/// How long one RPC waits for its reply.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an RPC keeps retrying an unreachable server: a down OST shows as an error row
/// in `lfs df` after this long, instead of after the client's default minute.
const RETRY_FOR: Duration = Duration::from_secs(5);
/// How long mounting keeps trying each MGS NID.
const MGS_RETRY_FOR: Duration = Duration::from_secs(5);
/// How long unmount may take before the tool exits anyway.
const UNMOUNT_DEADLINE: Duration = Duration::from_secs(5);
/// Worker threads of the tool's runtime: enough for the client's background tasks.
const RUNTIME_WORKERS: usize = 2;

/// Mounts native clients.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeConnector;

struct NativeFs {
    runtime: tokio::runtime::Runtime,
    client: Client,
    mgs_nid: String,
}

impl Connector for NativeConnector {
    fn connect(&self, spec_text: &str) -> Result<Box<dyn Filesystem>, ToolError> {
        let fail = |reason: String| ToolError::Connect {
            spec: spec_text.to_string(),
            reason,
        };
        let spec: MountSpec = spec_text.parse().map_err(|e| fail(format!("{e}")))?;
        let mgs_nid = spec
            .mgs_nids
            .first()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name("sheen-tools")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start runtime: {e}")))?;
        let config = ClientConfig {
            rpc_timeout: RPC_TIMEOUT,
            retry_for: RETRY_FOR,
            mgs_retry_for: MGS_RETRY_FOR,
            client_uuid: format!("sheen-tools-{}", std::process::id()),
            ..ClientConfig::default()
        };
        let mounted = runtime.block_on(async {
            tokio::time::timeout(MOUNT_DEADLINE, Client::mount(&spec, config)).await
        });
        let client = match mounted {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail(format!("no answer within {MOUNT_DEADLINE:?}"))),
        };
        Ok(Box::new(NativeFs {
            runtime,
            client,
            mgs_nid,
        }))
    }
}

impl Filesystem for NativeFs {
    fn config(&self) -> &FsConfig {
        self.client.fs_config()
    }

    fn mgs_nid(&self) -> String {
        self.mgs_nid.clone()
    }

    fn target_statfs(&mut self) -> Vec<TargetStatfs> {
        let replies = self.runtime.block_on(self.client.target_statfs());
        replies
            .into_iter()
            .map(|(info, r)| (info, r.map_err(|e| e.to_string())))
            .collect()
    }
}

impl Drop for NativeFs {
    fn drop(&mut self) {
        let client = &self.client;
        // Disconnecting politely lets the servers forget this client at once; when they do
        // not answer in time the process exits anyway and they time the client out.
        let _timed_out = self
            .runtime
            .block_on(async { tokio::time::timeout(UNMOUNT_DEADLINE, client.unmount()).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_spec_is_a_connect_error() {
        let err = NativeConnector.connect("not a spec").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot reach filesystem not a spec: "),
            "{err}"
        );
    }
}
