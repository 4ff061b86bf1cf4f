import Foundation

/// libFuzzer's entry point (`-sanitize=fuzzer` links it; SwiftPM gives each harness executable its own `main`).
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzer(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// Runs libFuzzer with this process's arguments, calling `body` on each input, and exits with its status.
public func fuzzMain(_ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
    exit(runFuzzer(&argc, &argv, body))
}
