//! The route table: `METHOD /path/{param}` patterns from the config, matched per request.
//!
//! When several patterns match a path, the one with more literal segments wins, so
//! `/api/cart/checkout/{id}` beats `/api/cart/{id}/{tmp}`; among equals the first configured
//! wins. A path that matches only with other methods gets 405 with the allowed methods. A
//! `{*name}` segment at the end captures the rest of the path (one segment or more). HEAD is
//! answered by a GET route when no HEAD route is configured.

/// One configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper-case method.
    pub method: String,
    /// The pattern as configured.
    pub pattern: String,
    /// The plugin that serves it.
    pub plugin: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: the rest of the path, `/`-joined.
    Rest(String),
}

impl Route {
    /// Parses `pattern` (validated by the config loader: leading `/`, unique param names).
    pub fn new(method: &str, pattern: &str, plugin: &str) -> Self {
        let segments = split(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => match name.strip_prefix('*') {
                        Some(rest) => Segment::Rest(rest.to_string()),
                        None => Segment::Param(name.to_string()),
                    },
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        Route {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_string(),
            plugin: plugin.to_string(),
            segments,
        }
    }

    /// The params if `path` matches this route's pattern (ignoring the method).
    fn capture(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let rest = matches!(self.segments.last(), Some(Segment::Rest(_)));
        let fits = if rest {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        if !fits {
            return None;
        }
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            let actual = path[i];
            match segment {
                Segment::Literal(lit) if lit == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), actual.to_string())),
                Segment::Rest(name) => params.push((name.clone(), path[i..].join("/"))),
            }
        }
        Some(params)
    }

    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
}

/// The outcome of matching a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// A route serves it; params are still percent-encoded.
    Found(&'a Route, Vec<(String, String)>),
    /// The path is served, but not with this method.
    MethodNotAllowed(Vec<String>),
    /// No route has this path.
    NotFound,
}

/// All routes of the host.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table of `routes`, in configured order.
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// The routes, in configured order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for `method` and `path`; HEAD falls back to GET.
    pub fn find(&self, method: &str, path: &str) -> Match<'_> {
        match self.find_exact(method, path) {
            Match::MethodNotAllowed(_) if method == "HEAD" => self.find_exact("GET", path),
            found => found,
        }
    }

    fn find_exact(&self, method: &str, path: &str) -> Match<'_> {
        let path: Vec<&str> = split(path).collect();
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = route.capture(&path) else {
                continue;
            };
            if route.method != method {
                if !allowed.contains(&route.method) {
                    allowed.push(route.method.clone());
                }
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(b, _)| route.literals() > b.literals())
            {
                best = Some((route, params));
            }
        }
        match best {
            Some((route, params)) => Match::Found(route, params),
            None if !allowed.is_empty() => Match::MethodNotAllowed(allowed),
            None => Match::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(vec![
            Route::new("GET", "/api/cart/{cartId}", "cart"),
            Route::new("POST", "/api/cart/{cartId}/{tmpId}", "cart"),
            Route::new("POST", "/api/cart/checkout/{cartId}", "cart-checkout"),
            Route::new("GET", "/api/products", "catalog"),
        ])
    }

    #[test]
    fn captures_params() {
        match table().find("GET", "/api/cart/42") {
            Match::Found(route, params) => {
                assert_eq!(route.pattern, "/api/cart/{cartId}");
                assert_eq!(params, [("cartId".to_string(), "42".to_string())]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn more_literal_segments_win() {
        let table = table();
        let Match::Found(route, _) = table.find("POST", "/api/cart/checkout/7") else {
            panic!()
        };
        assert_eq!(route.plugin, "cart-checkout");
        let Match::Found(route, _) = table.find("POST", "/api/cart/1/2") else {
            panic!()
        };
        assert_eq!(route.plugin, "cart");
    }

    #[test]
    fn rest_captures_the_remaining_segments() {
        let table = RouteTable::new(vec![Route::new("GET", "/files/{*rest}", "files")]);
        let Match::Found(_, params) = table.find("GET", "/files/a/b%20c/d") else {
            panic!()
        };
        assert_eq!(params, [("rest".to_string(), "a/b%20c/d".to_string())]);
        assert_eq!(table.find("GET", "/files"), Match::NotFound);
    }

    #[test]
    fn head_is_served_by_get() {
        let table = table();
        let Match::Found(route, _) = table.find("HEAD", "/api/products") else {
            panic!()
        };
        assert_eq!(route.method, "GET");
    }

    #[test]
    fn wrong_method_and_unknown_path() {
        assert_eq!(
            table().find("DELETE", "/api/products"),
            Match::MethodNotAllowed(vec!["GET".into()])
        );
        assert_eq!(table().find("GET", "/api/nothing"), Match::NotFound);
        assert_eq!(table().find("GET", "/api/cart/"), Match::NotFound);
    }
}
