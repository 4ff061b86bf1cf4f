import Foundation

/// A model with the threads that run it: what one user of the library (a CLI command, a server's sequence,
/// a test) creates. Engines share nothing, so several can compute at once on different threads.
///
/// Sessions and prefill snapshots made by the engine run their prefill, decode and replay on its pool.
public final class Engine: Sendable {
    public let model: LanguageModel
    public let pool: ThreadPool

    /// `model` run on a new pool of `threads` threads (default: one per active processor).
    public init(model: LanguageModel, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.model = model
        pool = ThreadPool(threads: threads)
    }

    /// Loads the model of an opened GGUF file.
    public convenience init(file: GGUFFile, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        self.init(model: try loadModel(file: file), threads: threads)
    }

    /// Opens (memory-maps) the GGUF file at `path` and loads its model.
    public convenience init(path: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        try self.init(file: try GGUFFile(path: path), threads: threads)
    }

    /// A new sequence with the KV cache `policy`, computed on this engine's pool.
    public func session(policy: KVPolicy) -> InferenceSession {
        InferenceSession(model: model, policy: policy, pool: pool)
    }

    /// The dense prefill of `tokens` over a full cache of `kvType` rows, recorded for replay into any policy
    /// (see `PrefillSnapshot`).
    public func prefillSnapshot(_ tokens: [Int], chunkSize: Int = 512, kvType: KVCacheType = .f16,
                                progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> PrefillSnapshot {
        try PrefillSnapshot(model: model, tokens: tokens, chunkSize: chunkSize, kvType: kvType, pool: pool, progress: progress)
    }
}
