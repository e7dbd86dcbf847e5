//! Fuzzes the MXNet `.params` reader: it must never panic, and whatever it accepts must
//! write back to bytes that read and write again unchanged.
#![no_main]

use kiln_frontend::mxnet::params::{read_ndarrays, write_ndarrays, MxParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = read_ndarrays(data) else {
        return;
    };
    let _ = MxParams::from_list(list.clone());
    let once = write_ndarrays(&list).expect("an accepted file writes back");
    let again = read_ndarrays(&once).expect("written bytes read again");
    let twice = write_ndarrays(&again).expect("and write again");
    assert_eq!(once, twice, "the round trip changed the bytes");
});
