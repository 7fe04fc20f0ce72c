//! Which simulated vendor a request is for, by its route; and the answer that is the same for
//! every vendor, a connection cut mid-response. (Each vendor's own answers are in `faults`.)

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;

/// Which vendor a request is for, by its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vendor {
    Wdt,
    Qimen,
    Top,
    Finance,
    K3cloud,
}

impl Vendor {
    pub fn of_path(path: &str) -> Option<Vendor> {
        match path {
            p if p.starts_with("/openapi2/") => Some(Vendor::Wdt),
            "/router/qm" => Some(Vendor::Qimen),
            "/router/rest" => Some(Vendor::Top),
            "/api" => Some(Vendor::Finance),
            p if p.starts_with("/k3cloud/") => Some(Vendor::K3cloud),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Wdt => "wdt",
            Vendor::Qimen => "qimen",
            Vendor::Top => "top",
            Vendor::Finance => "finance",
            Vendor::K3cloud => "k3cloud",
        }
    }
}

/// Headers go out, then the body fails: the connection is cut mid-response.
pub fn dropped_connection() -> Response {
    let body = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("simulated dropped connection"))
    });
    Response::builder().status(StatusCode::OK).body(Body::from_stream(body)).expect("response")
}
