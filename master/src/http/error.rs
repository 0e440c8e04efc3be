//! The one place errors become HTTP statuses: JSON `{"error": ...}` for
//! the API, an HTML page saying what went wrong for the pages.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::core::CoreError;
use crate::journal::JournalError;
use crate::runtime::MasterError;
use crate::snapshots::SnapshotError;

/// An answer other than success, and whether it goes to a browser page.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    /// Render as an HTML page (else JSON).
    pub page: bool,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            page: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The same error, shown as a page.
    pub fn page(self) -> HttpError {
        HttpError { page: true, ..self }
    }
}

impl From<MasterError> for HttpError {
    fn from(error: MasterError) -> HttpError {
        let message = error.to_string();
        let status = match error {
            MasterError::Core(e) => match e {
                CoreError::Invalid(_) => StatusCode::BAD_REQUEST,
                CoreError::NotFound(_) => StatusCode::NOT_FOUND,
                CoreError::WrongMaster { .. } => StatusCode::FORBIDDEN,
                CoreError::AlreadyExists(_) | CoreError::FailedPrecondition(_) => {
                    StatusCode::CONFLICT
                }
                // An admission limit (gRPC's RESOURCE_EXHAUSTED).
                CoreError::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
                CoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            MasterError::Journal(JournalError::DiskFull(_)) => StatusCode::INSUFFICIENT_STORAGE,
            MasterError::Journal(_) | MasterError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            MasterError::Snapshot(SnapshotError::NotFound(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.page {
            let title = match self.status {
                StatusCode::NOT_FOUND => "Not found",
                StatusCode::BAD_REQUEST => "Bad request",
                _ => "Error",
            };
            let body = super::pages::error_page(self.status, title, &self.message);
            return (self.status, Html(body)).into_response();
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
