// swift-tools-version:6.0
// libFuzzer harnesses for the inputs RocketKV takes from strangers: GGUF files (container, hyper-parameters,
// tokenizer and model tables), text to tokenize and detokenize, chat templates, and the server's request bodies. A separate package because
// each harness is built with `-sanitize=fuzzer` (libFuzzer supplies `main`): `scripts/fuzz.sh` builds and runs them.
import Foundation
import PackageDescription

/// SwiftPM names a path dependency after its folder: whatever the checkout is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "RocketKVFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzGGUF", dependencies: ["FuzzDriver", .product(name: "RocketKV", package: root)]),
        .executableTarget(name: "FuzzTokenizer", dependencies: ["FuzzDriver", .product(name: "RocketKV", package: root)]),
        .executableTarget(name: "FuzzTemplate", dependencies: ["FuzzDriver", .product(name: "RocketKV", package: root)]),
        .executableTarget(name: "FuzzRequest", dependencies: ["FuzzDriver", .product(name: "RocketKV", package: root),
                                                            .product(name: "RocketKVServer", package: root)]),
    ]
)
