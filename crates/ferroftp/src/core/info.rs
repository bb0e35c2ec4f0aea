//! STAT without an argument: the session's status.

use ferroftp_proto::{Reply, TransferType};

use super::{DataSetup, LoginState, Session, TlsState, TlsVersion};

impl Session {
    pub(super) fn status_reply(&self) -> Reply {
        let mut body = Vec::new();
        match &self.login {
            LoginState::LoggedIn { account, .. } => {
                body.push(format!("Connected to {} from {}", self.local, self.peer));
                body.push(format!("Logged in as {}", account.name));
            }
            // The server's own address (maybe a private one behind NAT) is for users only.
            _ => body.push("Not logged in".to_string()),
        }
        let ty = match self.ty {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        body.push(format!(
            "TYPE: {ty}; STRUcture: File; transfer MODE: Stream"
        ));
        body.push(match self.tls {
            TlsState::Tls(v) | TlsState::Pbsz(v, _) => format!(
                "Control connection: {}; data connections: {}",
                match v {
                    TlsVersion::V1_3 => "TLS 1.3",
                    TlsVersion::V1_2 => "TLS 1.2",
                    TlsVersion::Other => "TLS",
                },
                if self.tls.data_private() {
                    "protected (PROT P)"
                } else {
                    "clear (PROT C)"
                }
            ),
            TlsState::None => "Control connection: not encrypted".to_string(),
        });
        body.push(match &self.data {
            DataSetup::None => "No data connection".to_string(),
            DataSetup::Passive { port, .. } => format!("Passive mode: waiting on port {port}"),
            DataSetup::Active(t) => format!("Active mode: will connect to {t}"),
        });
        body.push(format!(
            "Idle timeout: {} s",
            self.settings.idle_timeout_secs
        ));
        Reply::multi(211, "ferroftp status:", body, "End of status")
    }
}
