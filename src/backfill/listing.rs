//! Placeholder until the listers land: the run code compiles against this shape.
use super::{ApiError, Known, Page, Window};
use crate::providers::api::ApiAccess;

pub struct Lister;

impl Lister {
    pub fn new(_: &ApiAccess, _: Window, _: Vec<String>, _: Known) -> Result<Lister, ApiError> {
        Err(ApiError::Unavailable("not built".into()))
    }
}

impl super::run::Pages for Lister {
    async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
        Ok(None)
    }
}
