#![no_main]

#[global_allocator]
static METER: commons_fuzz::alloc::Meter = commons_fuzz::alloc::Meter;

libfuzzer_sys::fuzz_target!(|data: &[u8]| commons_fuzz::Target::ChunkRun.check(data));
