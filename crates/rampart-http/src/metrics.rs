//! Request counts and latency histograms per route of the route table, lock-free: one
//! slot per route (its template and method are the labels, never the path a client sent),
//! and one for everything no route matched.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_core::metrics::header;

use crate::routes::RouteInfo;

/// Statuses counted under their own code; the rest under their class (`4xx`, ...).
const STATUSES: [u16; 20] =
    [200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 411, 412, 413, 415, 422, 428, 429, 431, 500, 503];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

struct Slot {
    route: &'static str,
    method: &'static str,
    statuses: [AtomicU64; STATUSES.len() + CLASSES.len()],
    /// Observations at or under each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Slot {
    fn new(route: &'static str, method: &'static str) -> Self {
        Self {
            route,
            method,
            statuses: Default::default(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

pub(crate) struct HttpMetrics {
    /// One per route of the table, in its order, then the unmatched slot.
    slots: Vec<Slot>,
}

impl HttpMetrics {
    pub(crate) fn new(routes: &[RouteInfo]) -> Self {
        let mut slots: Vec<Slot> = routes.iter().map(|r| Slot::new(r.path, method_label(&r.method))).collect();
        slots.push(Slot::new("unmatched", "any"));
        Self { slots }
    }

    /// The slot of requests no route (method and path) matched.
    pub(crate) fn unmatched(&self) -> usize {
        self.slots.len() - 1
    }

    pub(crate) fn observe(&self, slot: usize, status: u16, elapsed: Duration) {
        let Some(s) = self.slots.get(slot).or(self.slots.last()) else { return };
        let i = STATUSES
            .iter()
            .position(|c| *c == status)
            .unwrap_or_else(|| STATUSES.len() + usize::from(status / 100).saturating_sub(1).min(CLASSES.len() - 1));
        s.statuses[i].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|bound| secs <= *bound) {
            s.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        header(
            out,
            "rampart_http_requests_total",
            "counter",
            "Requests answered, by route template, method and status.",
        );
        for s in &self.slots {
            for (i, c) in s.statuses.iter().enumerate() {
                let n = load(c);
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(i).map_or_else(|| CLASSES[i - STATUSES.len()].to_owned(), u16::to_string);
                let _ = writeln!(
                    out,
                    "rampart_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    s.route, s.method
                );
            }
        }
        let name = "rampart_http_request_duration_seconds";
        header(out, name, "histogram", "Time from request to response head, by route template and method.");
        for s in &self.slots {
            let count = load(&s.count);
            if count == 0 {
                continue;
            }
            let labels = format!("route=\"{}\",method=\"{}\"", s.route, s.method);
            let mut cumulative = 0;
            for (bound, c) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += load(c);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            #[allow(clippy::cast_precision_loss)] // microsecond totals far below 2^52
            let sum = load(&s.sum_micros) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::route_inventory;

    #[test]
    fn routes_are_counted_by_template_and_histograms_are_cumulative() {
        let routes = route_inventory();
        let m = HttpMetrics::new(&routes);
        let login = routes.iter().position(|r| r.path == "/api/v1/auth/login").unwrap();
        m.observe(login, 401, Duration::from_millis(3));
        m.observe(login, 401, Duration::from_millis(30));
        m.observe(login, 418, Duration::from_secs(9));
        m.observe(m.unmatched(), 404, Duration::from_micros(10));
        let mut out = String::new();
        m.render(&mut out);
        let route = "route=\"/api/v1/auth/login\",method=\"POST\"";
        assert!(out.contains(&format!("rampart_http_requests_total{{{route},status=\"401\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("rampart_http_requests_total{{{route},status=\"4xx\"}} 1\n")));
        assert!(out.contains(&format!("rampart_http_request_duration_seconds_bucket{{{route},le=\"0.005\"}} 1\n")));
        assert!(out.contains(&format!("rampart_http_request_duration_seconds_bucket{{{route},le=\"0.05\"}} 2\n")));
        assert!(out.contains(&format!("rampart_http_request_duration_seconds_bucket{{{route},le=\"+Inf\"}} 3\n")));
        assert!(out.contains("rampart_http_requests_total{route=\"unmatched\",method=\"any\",status=\"404\"} 1\n"));
    }
}
