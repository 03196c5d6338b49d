//! Any bytes as the query string of a GET route (the first byte picks the route): parsed and checked
//! as the handler does, refused with an error naming a parameter, never a panic (offset, from_min and
//! PUE dates made handlers panic before).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlas_server::routes::queries::{check, ROUTES};

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let route = ROUTES[usize::from(*first) % ROUTES.len()];
    let query = String::from_utf8_lossy(rest);
    if let Err(e) = check(route, &query) {
        assert!(!e.to_string().is_empty());
    }
});
