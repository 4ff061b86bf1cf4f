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
        .target(name: "RocketKV"),
        .executableTarget(
            name: "rocketkv",
            dependencies: ["RocketKV", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "RocketKVTests", dependencies: ["RocketKV"]),
    ],
    swiftLanguageModes: [.v5]
)
