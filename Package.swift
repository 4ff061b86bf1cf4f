// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "RocketKV",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "RocketKV", targets: ["RocketKV"]),
        .library(name: "RocketKVServer", targets: ["RocketKVServer"]),
        .executable(name: "rocketkv", targets: ["rocketkv"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // SIMD kernels (AVX2/FMA/F16C with run-time dispatch and a portable fallback) and the thread pool.
        .target(name: "CKernels"),
        // The Jinja2 interpreter behind chat templates; templates come from model files, so it is bounded.
        .target(name: "Jinja", swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "RocketKV", dependencies: ["CKernels", "Jinja"]),
        // The OpenAI-compatible HTTP server (`rocketkv serve`); the core library knows nothing of HTTP.
        .target(
            name: "RocketKVServer",
            dependencies: ["RocketKV",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "rocketkv",
            dependencies: ["RocketKV", "RocketKVServer", "Jinja", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The README's "use it from Swift" example, compiled and run by CI.
        .executableTarget(name: "StreamReply", dependencies: ["RocketKV"], path: "Examples/StreamReply"),
        // Fast unit tests: no model file needed.
        .testTarget(name: "JinjaTests", dependencies: ["Jinja"], swiftSettings: [.swiftLanguageMode(.v6)]),
        // A GGUF writer the test targets share (hostile and synthetic model files).
        .target(name: "TestSupport", dependencies: ["RocketKV"], path: "Tests/TestSupport"),
        .testTarget(name: "RocketKVTests", dependencies: ["RocketKV", "CKernels", "TestSupport"]),
        .testTarget(name: "RocketKVServerTests", dependencies: ["RocketKVServer", "RocketKV"]),
        // The built `rocketkv` binary on a table of bad inputs: exit codes and first lines of stderr.
        .testTarget(name: "CLITests", dependencies: ["RocketKV", "TestSupport"]),
        // Tests on the real default model (fetched on first use) against llama.cpp fixtures; run in release.
        .testTarget(name: "RocketKVModelTests", dependencies: ["RocketKV"], resources: [.copy("Fixtures")]),
    ]
)
