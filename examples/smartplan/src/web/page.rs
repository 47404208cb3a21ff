//! [`Page`]: what the base layout (`templates/layout.html`) needs from every page: the title,
//! the CSRF token, the flash message, the navigation of the signed-in person, the branding
//! and whether the demo links are shown. Handlers get one from [`PageContext`]:
//!
//! ```ignore
//! #[derive(askama::Template)]
//! #[template(path = "account/profile.html")] // {% extends "layout.html" %}
//! struct Profile { page: Page, /* ... */ }
//!
//! async fn show(ctx: PageContext, me: SignedIn) -> Result<Html<String>, WebError> {
//!     web::render(&Profile { page: ctx.page("Your profile"), /* ... */ })
//! }
//! ```

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use ciam_core::identities::Mandate;
use ciam_core::ids::OrganizationId;

use crate::state::AppState;
use crate::web::csrf::Csrf;
use crate::web::flash::{Flash, IncomingFlash};
use crate::web::session::{MaybeSignedIn, SignedIn};

/// An organization the signed-in person administers (a link in the navigation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLink {
    /// The organization.
    pub organization: OrganizationId,
    /// Its name.
    pub name: String,
}

impl AdminLink {
    /// `/admin/orgs/{id}`.
    pub fn href(&self) -> String {
        format!("/admin/orgs/{}", self.organization)
    }
}

/// The navigation of a signed-in person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nav {
    /// The person's name (or email when no name is known).
    pub display_name: String,
    /// Whether to show the back-office link.
    pub staff: bool,
    /// Organizations the person administers (contact person or delegate).
    pub admin_of: Vec<AdminLink>,
}

/// The look of the pages: SmartPlan's, or an organization's logo and accent colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branding {
    /// The name in the header.
    pub name: String,
    /// The logo, when the organization has one.
    pub logo_url: Option<String>,
    /// An extra stylesheet setting the accent colour (`/static/brand/{crm_account_id}.css`).
    pub stylesheet: Option<String>,
}

impl Default for Branding {
    fn default() -> Self {
        Self {
            name: "SmartPlan".to_owned(),
            logo_url: None,
            stylesheet: None,
        }
    }
}

impl Branding {
    /// The branding of an organization: its name, with its logo and accent colour when the
    /// organization has them (`Organization::branding`, set by its administrators).
    pub fn for_organization(organization: &ciam_core::organizations::Organization) -> Self {
        let branding = &organization.branding;
        Self {
            name: organization.name.clone(),
            logo_url: branding
                .logo_url
                .clone()
                .filter(|url| url.starts_with("https://") || url.starts_with("/static/")),
            stylesheet: branding
                .primary_color
                .as_deref()
                .filter(|colour| crate::ops::is_hex_colour(colour))
                .map(|_| format!("/static/brand/{}.css", organization.id)),
        }
    }

    /// Whether an organization's look replaces SmartPlan's.
    pub fn is_custom(&self) -> bool {
        self.logo_url.is_some() || self.stylesheet.is_some()
    }
}

/// What the layout shows around every page.
#[derive(Clone, Debug)]
pub struct Page {
    /// The page title (the `<title>` and usually the `<h1>`).
    pub title: String,
    /// The CSRF token for the hidden `csrf` field of forms.
    pub csrf: String,
    /// A message carried over from the previous request.
    pub flash: Option<Flash>,
    /// The signed-in person's navigation.
    pub nav: Option<Nav>,
    /// The look.
    pub branding: Branding,
    /// Demo mode: show the dev mailbox and SMS outbox links.
    pub demo: bool,
}

impl Page {
    /// A page with only a title (error pages).
    pub fn plain(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            csrf: String::new(),
            flash: None,
            nav: None,
            branding: Branding::default(),
            demo: false,
        }
    }

    /// With another branding (an organization's pages).
    pub fn branded(mut self, branding: Branding) -> Self {
        self.branding = branding;
        self
    }

    /// With a flash message shown now (instead of the one carried over).
    pub fn with_flash(mut self, flash: Flash) -> Self {
        self.flash = Some(flash);
        self
    }
}

/// The request's page context: gives a [`Page`] for a title. Also gives the signed-in person,
/// if any.
#[derive(Clone, Debug)]
pub struct PageContext {
    csrf: String,
    flash: Option<Flash>,
    nav: Option<Nav>,
    branding: Branding,
    demo: bool,
    /// The signed-in person, if any.
    pub signed_in: Option<SignedIn>,
}

impl PageContext {
    /// The page for `title`.
    pub fn page(&self, title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            csrf: self.csrf.clone(),
            flash: self.flash.clone(),
            nav: self.nav.clone(),
            branding: self.branding.clone(),
            demo: self.demo,
        }
    }

    /// The CSRF token.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn nav_for(state: &AppState, signed_in: &SignedIn) -> (Nav, Branding) {
    let identity = signed_in.identity(state).await.ok();
    let display_name = identity.as_ref().map_or_else(String::new, |identity| {
        let full = identity.name.full();
        if full.trim().is_empty() {
            identity.email.to_string()
        } else {
            full
        }
    });
    let mut admin_of = Vec::new();
    let mut branding = Branding::default();
    for grant in &signed_in.user.grants {
        let Ok(Some(organization)) = state.store.organization(grant.organization).await else {
            continue;
        };
        let administers = grant.mandates.iter().any(|m| {
            matches!(
                m,
                Mandate::OrgAdmin | Mandate::UserManager | Mandate::ServiceManager(_)
            )
        });
        if !branding.is_custom() && organization.kind != ciam_core::organizations::OrgKind::Provider
        {
            let candidate = Branding::for_organization(&organization);
            if candidate.is_custom() {
                branding = candidate;
            }
        }
        if administers {
            admin_of.push(AdminLink {
                organization: organization.id,
                name: organization.name.clone(),
            });
        }
    }
    (
        Nav {
            display_name,
            staff: signed_in.is_staff(),
            admin_of,
        },
        branding,
    )
}

impl FromRequestParts<AppState> for PageContext {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let csrf = Csrf::from_request_parts(parts, state).await?.0;
        let flash = parts
            .extensions
            .get::<IncomingFlash>()
            .and_then(|incoming| incoming.0.clone());
        let MaybeSignedIn(signed_in) = MaybeSignedIn::from_request_parts(parts, state).await?;
        let (nav, branding) = match &signed_in {
            Some(signed_in) => {
                let (nav, branding) = nav_for(state, signed_in).await;
                (Some(nav), branding)
            }
            None => (None, Branding::default()),
        };
        Ok(Self {
            csrf,
            flash,
            nav,
            branding,
            demo: state.config.demo,
            signed_in,
        })
    }
}
