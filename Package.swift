// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "RocketKV",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "RocketKV", targets: ["RocketKV"]),
        .executable(name: "rocketkv", targets: ["rocketkv"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // SIMD kernels (AVX2/FMA/F16C with run-time dispatch and a portable fallback) and the thread pool.
        .target(name: "CKernels"),
        // The Jinja2 interpreter behind chat templates; templates come from model files, so it is bounded.
        .target(name: "Jinja", swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "RocketKV", dependencies: ["CKernels", "Jinja"]),
        .executableTarget(
            name: "rocketkv",
            dependencies: ["RocketKV", "Jinja", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Fast unit tests: no model file needed.
        .testTarget(name: "JinjaTests", dependencies: ["Jinja"], swiftSettings: [.swiftLanguageMode(.v6)]),
        // A GGUF writer the test targets share (hostile and synthetic model files).
        .target(name: "TestSupport", dependencies: ["RocketKV"], path: "Tests/TestSupport"),
        .testTarget(name: "RocketKVTests", dependencies: ["RocketKV", "CKernels", "TestSupport"]),
        // The built `rocketkv` binary on a table of bad inputs: exit codes and first lines of stderr.
        .testTarget(name: "CLITests", dependencies: ["RocketKV", "TestSupport"]),
        // Tests on the real default model (fetched on first use) against llama.cpp fixtures; run in release.
        .testTarget(name: "RocketKVModelTests", dependencies: ["RocketKV"], resources: [.copy("Fixtures")]),
    ]
)
