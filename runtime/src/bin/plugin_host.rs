//! `rosey-plugin-host`: runs one plugin in a sandboxed process of its own, started and
//! supervised by rosey-runtime (see `rosey_runtime::plugin_host`).

fn main() -> std::process::ExitCode {
    rosey_runtime::plugin_host::main()
}
