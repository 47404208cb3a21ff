//! [`WebError`]: the one place where errors become HTTP responses. Pages get an HTML error
//! page ([`WebError`] itself implements `IntoResponse`); the REST API wraps it in
//! [`ApiError`], which answers `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every ciam-core error converts with `?`; the status and the stable code are decided here.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use ciam_core::audit::AuditError;
use ciam_core::authz::DenyReason;
use ciam_core::contact::ValidationError;
use ciam_core::credentials::PasswordError;
use ciam_core::delivery::DeliveryError;
use ciam_core::identities::{AdministrationError, ProfileError};
use ciam_core::invitations::InvitationError;
use ciam_core::login::LoginError;
use ciam_core::organizations::ProvisioningError;
use ciam_core::registrations::RegistrationError;
use ciam_core::services::{CatalogError, RoleResolutionError};
use ciam_core::sessions::SessionError;
use ciam_core::store::{StoreError, StoreErrorKind};
use ciam_crm::FieldError;
use serde::Serialize;

use crate::web::page::Page;

/// An error on its way to the client: a status, a stable machine-readable code and a plain
/// message a person can act on. Internal details are logged, never shown.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<FieldError>,
    retry_after_seconds: Option<u64>,
    sign_in_next: Option<String>,
}

impl WebError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after_seconds: None,
            sign_in_next: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the request is well-formed but a value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 422 naming the refused fields.
    pub fn invalid_fields(message: impl Into<String>, fields: Vec<FieldError>) -> Self {
        let mut error = Self::invalid(message);
        error.fields = fields;
        error
    }

    /// 401 for the API: no or a wrong credential.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: changed concurrently or already exists.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many requests; try again in {} seconds",
                retry_after_seconds.max(1)
            ),
        );
        error.retry_after_seconds = Some(retry_after_seconds.max(1));
        error
    }

    /// 413.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit_bytes} bytes"),
        )
    }

    /// 503: a dependency (the database, mail) is down; retrying later may work.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(%detail, "service unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is unavailable for a moment; try again shortly",
        )
    }

    /// 500: a bug or an unexpected failure. `detail` is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; try again, and tell us if it keeps happening",
        )
    }

    /// The form's CSRF token is missing or wrong (403).
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this form has expired or was sent from another site; go back, reload the page and try again",
        )
    }

    /// Nobody is signed in: pages redirect to `/signin?next=...` (the API answers 401).
    pub fn sign_in_required(next: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::UNAUTHORIZED,
            "sign_in_required",
            "sign in first",
        );
        error.sign_in_next = Some(next.into());
        error
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to the person or client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The refused fields (validation errors).
    pub fn fields(&self) -> &[FieldError] {
        &self.fields
    }

    fn headers(&self, response: &mut Response) {
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for WebError {}

/// The HTML error page.
#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage<'a> {
    page: Page,
    status: u16,
    heading: &'a str,
    message: &'a str,
}

fn heading_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "That did not work",
        401 | 403 => "Not allowed",
        404 => "Page not found",
        409 => "Changed in the meantime",
        413 => "Too large",
        429 => "Slow down",
        503 => "Temporarily unavailable",
        _ => "Something went wrong",
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Some(next) = &self.sign_in_next {
            let location = format!("/signin?next={}", urlencode(next));
            return Redirect::to(&location).into_response();
        }
        let page = ErrorPage {
            page: Page::plain(heading_for(self.status)),
            status: self.status.as_u16(),
            heading: heading_for(self.status),
            message: &self.message,
        };
        let body = page.render().unwrap_or_else(|_| {
            // The error page is compiled in; rendering it cannot fail except on a bug.
            format!(
                "<!doctype html><title>Error</title><p>{}</p>",
                askama_escape(&self.message)
            )
        });
        let mut response = (self.status, Html(body)).into_response();
        self.headers(&mut response);
        response
    }
}

fn askama_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A [`WebError`] answered as JSON, for the REST API.
#[derive(Debug)]
pub struct ApiError(pub WebError);

/// The JSON error body: `{"error": {"code": "...", "message": "...", "errors": [...]}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ciam_crm::commands::ErrorBody,
}

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let status = if error.sign_in_next.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            error.status
        };
        let body = ApiErrorBody {
            error: ciam_crm::commands::ErrorBody {
                code: error.code.to_owned(),
                message: error.message.clone(),
                errors: error.fields.clone(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        error.headers(&mut response);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"smartplan\""),
            );
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// From ciam-core and ciam-crm errors
// ---------------------------------------------------------------------------------------------

impl From<StoreError> for WebError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::NotFound => Self::not_found(error.to_string()),
            StoreErrorKind::Conflict => Self::conflict(
                "conflict",
                "this was changed at the same time elsewhere; reload and try again",
            ),
            StoreErrorKind::Unique => Self::conflict("already_exists", error.to_string()),
            StoreErrorKind::Unavailable => Self::unavailable(error),
            _ => Self::internal(error),
        }
    }
}

impl From<DenyReason> for WebError {
    fn from(reason: DenyReason) -> Self {
        match reason {
            DenyReason::NotSignedIn => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason.to_string())
            }
            other => Self::forbidden(other.to_string()),
        }
    }
}

impl From<ValidationError> for WebError {
    fn from(error: ValidationError) -> Self {
        Self::invalid(error.to_string())
    }
}

impl From<PasswordError> for WebError {
    fn from(error: PasswordError) -> Self {
        Self::invalid(error.to_string())
    }
}

impl From<DeliveryError> for WebError {
    fn from(error: DeliveryError) -> Self {
        Self::unavailable(error)
    }
}

impl From<SessionError> for WebError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Denied(reason) => reason.into(),
            SessionError::Store(error) => error.into(),
            other => Self::new(StatusCode::UNAUTHORIZED, "session_ended", other.to_string()),
        }
    }
}

impl From<LoginError> for WebError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Throttled { retry_after, .. } => {
                let seconds = u64::try_from(retry_after.num_seconds()).unwrap_or(1);
                let mut throttled = Self::too_many_requests(seconds);
                throttled.message = error.to_string();
                throttled
            }
            LoginError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                error.to_string(),
            ),
            LoginError::WrongCode => Self::invalid(error.to_string()).with_code("wrong_code"),
            LoginError::CodeExpired
            | LoginError::AttemptExpired
            | LoginError::AttemptEnded
            | LoginError::ResendLimit
            | LoginError::InvalidResetLink => Self::invalid(error.to_string()).with_code("expired"),
            LoginError::ResendTooSoon => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                error.to_string(),
            ),
            LoginError::NoSecretKey => Self::internal(error),
            LoginError::Password(error) => error.into(),
            LoginError::Denied(reason) => reason.into(),
            LoginError::Session(error) => error.into(),
            LoginError::Store(error) => error.into(),
            LoginError::Seal(_) => {
                Self::invalid("the sign-in attempt is not valid; start again").with_code("expired")
            }
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<InvitationError> for WebError {
    fn from(error: InvitationError) -> Self {
        match error {
            InvitationError::Denied(reason) => reason.into(),
            InvitationError::Store(error) => error.into(),
            InvitationError::NotFound => Self::not_found(error.to_string()),
            InvitationError::AlreadyMember(_) | InvitationError::AlreadyInvited { .. } => {
                Self::conflict("already_exists", error.to_string())
            }
            InvitationError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<RegistrationError> for WebError {
    fn from(error: RegistrationError) -> Self {
        match error {
            RegistrationError::Denied(reason) => reason.into(),
            RegistrationError::Store(error) => error.into(),
            RegistrationError::NotFound => Self::not_found(error.to_string()),
            RegistrationError::TooManyCodes => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                error.to_string(),
            ),
            RegistrationError::AccountExists | RegistrationError::DomainTaken => {
                Self::conflict("already_exists", error.to_string())
            }
            RegistrationError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<ProfileError> for WebError {
    fn from(error: ProfileError) -> Self {
        match error {
            ProfileError::Denied(reason) => reason.into(),
            ProfileError::Store(error) => error.into(),
            ProfileError::UnknownIdentity => Self::not_found(error.to_string()),
            ProfileError::EmailTaken => Self::conflict("already_exists", error.to_string()),
            ProfileError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<AdministrationError> for WebError {
    fn from(error: AdministrationError) -> Self {
        match error {
            AdministrationError::Denied(reason) => reason.into(),
            AdministrationError::Store(error) => error.into(),
            AdministrationError::UnknownMember
            | AdministrationError::UnknownIdentity
            | AdministrationError::UnknownOrganization => Self::not_found(error.to_string()),
            AdministrationError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<ProvisioningError> for WebError {
    fn from(error: ProvisioningError) -> Self {
        match error {
            ProvisioningError::Denied(reason) => reason.into(),
            ProvisioningError::Store(error) => error.into(),
            ProvisioningError::UnknownOrganization(_) | ProvisioningError::UnknownContract(_) => {
                Self::not_found(error.to_string())
            }
            ProvisioningError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<CatalogError> for WebError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Denied(reason) => reason.into(),
            CatalogError::Store(error) => error.into(),
            CatalogError::UnknownService(_) => Self::not_found(error.to_string()),
            CatalogError::Conflict => Self::conflict("conflict", error.to_string()),
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<RoleResolutionError> for WebError {
    fn from(error: RoleResolutionError) -> Self {
        match error {
            RoleResolutionError::Denied(reason) => reason.into(),
            RoleResolutionError::Store(error) => error.into(),
            other => Self::not_found(other.to_string()),
        }
    }
}

impl From<AuditError> for WebError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Denied(reason) => reason.into(),
            AuditError::Store(error) => error.into(),
            other => Self::not_found(other.to_string()),
        }
    }
}

impl From<ciam_crm::CommandError> for WebError {
    fn from(error: ciam_crm::CommandError) -> Self {
        let status =
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Self::unavailable(error);
        }
        let body = error.to_body();
        let mut web = Self::new(status, error.code(), body.message);
        web.fields = body.errors;
        web
    }
}

impl WebError {
    /// The same error with another stable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

impl From<ciam_saml::idp::RegistryError> for WebError {
    fn from(error: ciam_saml::idp::RegistryError) -> Self {
        Self::unavailable(error)
    }
}

impl From<ciam_saml::idp::RequestError> for WebError {
    fn from(error: ciam_saml::idp::RequestError) -> Self {
        use ciam_saml::idp::RequestError;
        match error {
            RequestError::Registry(error) => error.into(),
            RequestError::TooLarge => Self::payload_too_large(256 * 1024)
                .with_message("the sign-in request from the application is too large"),
            RequestError::UnknownIssuer => Self::bad_request(
                "saml_unknown_application",
                "the application that sent you here is not registered with SmartPlan",
            ),
            other => Self::bad_request(
                "saml_request_refused",
                format!("the sign-in request from the application was refused: {other}"),
            ),
        }
    }
}

impl From<ciam_saml::idp::SignOnError> for WebError {
    fn from(error: ciam_saml::idp::SignOnError) -> Self {
        use ciam_saml::idp::SignOnError;
        match error {
            SignOnError::Store(error) => error.into(),
            SignOnError::NoAccess | SignOnError::NoOrganization | SignOnError::InactiveIdentity => {
                Self::forbidden(error.to_string())
            }
            other => Self::internal(other),
        }
    }
}

impl From<ciam_saml::idp::IssueError> for WebError {
    fn from(error: ciam_saml::idp::IssueError) -> Self {
        use ciam_saml::idp::IssueError;
        match error {
            IssueError::UnsolicitedNotAllowed => {
                Self::forbidden("this application can only be opened from its own sign-in button")
            }
            IssueError::NoEmail => Self::invalid("your account has no email address"),
            IssueError::NoEndpoint => Self::bad_request(
                "saml_no_endpoint",
                "the application has no address registered for this message",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<ciam_saml::idp::LogoutError> for WebError {
    fn from(error: ciam_saml::idp::LogoutError) -> Self {
        use ciam_saml::idp::LogoutError;
        match error {
            LogoutError::Session(error) => error.into(),
            LogoutError::Store(error) => error.into(),
            other => Self::bad_request("saml_logout_refused", other.to_string()),
        }
    }
}
