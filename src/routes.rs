//! The route table: longest matching prefix wins.

use crate::config::RouteConfig;
use std::sync::Arc;

/// A route ready for the hot path.
#[derive(Debug)]
pub struct Route {
    /// Index of the route in the config (and its metrics slot).
    pub index: usize,
    pub config: RouteConfig,
    /// The required scopes joined by spaces, for `WWW-Authenticate`.
    pub scope_hint: Arc<str>,
    /// The prefix, as the access log names the route.
    pub label: Arc<str>,
}

/// Routes sorted so that the first match is the longest prefix.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table from the configured routes.
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .enumerate()
            .map(|(index, config)| Route {
                index,
                scope_hint: config.scopes.join(" ").into(),
                label: config.prefix.as_str().into(),
                config: config.clone(),
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.config.prefix.len()));
        RouteTable { routes }
    }

    /// The route whose prefix is the longest one `path` starts with.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| path.starts_with(r.config.prefix.as_str()))
    }

    /// Route labels by index, for metrics.
    pub fn labels(configs: &[RouteConfig]) -> Vec<String> {
        configs.iter().map(|c| c.prefix.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    fn table(prefixes: &[&str]) -> RouteTable {
        let mut toml = String::new();
        for p in prefixes {
            toml.push_str(&format!(
                "[[route]]\nprefix = {p:?}\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n"
            ));
        }
        RouteTable::new(&Config::from_toml(&toml, "t").expect("valid").routes)
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let t = table(&["/", "/api/", "/api/admin/"]);
        assert_eq!(t.find("/api/admin/x").map(|r| r.index), Some(2));
        assert_eq!(t.find("/api/x").map(|r| r.index), Some(1));
        assert_eq!(t.find("/other").map(|r| r.index), Some(0));
        let t = table(&["/api/"]);
        assert!(t.find("/ap").is_none());
    }

    proptest! {
        /// The chosen route is always a prefix of the path, and no longer
        /// matching prefix exists.
        #[test]
        fn chosen_prefix_is_the_longest(path in "/[a-c/]{0,8}") {
            let prefixes = ["/", "/a", "/a/", "/a/b", "/b/", "/c/a"];
            let t = table(&prefixes);
            let chosen = t.find(&path).map(|r| r.config.prefix.clone());
            let best = prefixes.iter().filter(|p| path.starts_with(*p)).max_by_key(|p| p.len());
            prop_assert_eq!(chosen.as_deref(), best.copied());
        }
    }
}
