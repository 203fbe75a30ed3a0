//! A credential source of the tests' own: hands out a world's logins without the process
//! environment (tests run in parallel threads) and counts how often each region asked.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use neo_reconcile::desired::{CredentialSource, Region};
use neo_reconcile::sources::credentials::{CredentialError, Credentials, DbCredentials, Secret};

pub struct Logins {
    /// (env prefix, password) per region, as `World::logins` holds them.
    logins: Vec<(String, String)>,
    fetches: Mutex<BTreeMap<String, u32>>,
}

impl Logins {
    pub fn new(logins: &[(&'static str, String)]) -> Logins {
        Logins {
            logins: logins
                .iter()
                .map(|(p, pw)| (p.to_string(), pw.clone()))
                .collect(),
            fetches: Mutex::new(BTreeMap::new()),
        }
    }

    /// How often each region's credentials were fetched.
    pub fn fetches(&self) -> BTreeMap<String, u32> {
        self.fetches.lock().unwrap().clone()
    }
}

impl Credentials for Logins {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> Pin<Box<dyn Future<Output = Result<DbCredentials, CredentialError>> + Send + 'a>> {
        Box::pin(async move {
            *self
                .fetches
                .lock()
                .unwrap()
                .entry(region.name.clone())
                .or_default() += 1;
            let CredentialSource::Env(prefix) = &region.credentials.source else {
                return Err(CredentialError::MissingEnv("test".into(), "test".into()));
            };
            let (_, password) = self
                .logins
                .iter()
                .find(|(p, _)| p == prefix)
                .ok_or_else(|| CredentialError::MissingEnv(prefix.clone(), prefix.clone()))?;
            Ok(DbCredentials {
                username: "neo_migrator".into(),
                password: Secret::new(password.clone()),
                lease: None,
            })
        })
    }
}
