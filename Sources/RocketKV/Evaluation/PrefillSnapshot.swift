/// The dense prefill of one prompt, recorded once so that every KV method and budget can start from it
/// without running the model over the prompt again (every method prefills densely, so the attention
/// inputs are the same for all of them).
///
/// It holds the post-RoPE queries, keys and values of every layer and chunk, and the last-token logits.
/// `replay(into:)` feeds them to a fresh policy exactly as `InferenceSession.prefill` would have.
public final class PrefillSnapshot {
    public let tokens: [Int]
    /// Logits after the last prompt token (the first generated token depends only on these).
    public let lastLogits: [Float]
    private let layers: [LayerAttention]
    /// `chunks[c][layer]`
    private let chunks: [[RecordedInput]]
    /// The pool the prefill, `replay` and the sessions of `session(model:policy:)` run on (nil: the current one).
    public let pool: ThreadPool?

    /// Prefills `tokens` with the full cache (of `kvType` rows, so the prompt's own attention reads what the
    /// replayed caches store) and records what each layer's attention received.
    public init(model: LanguageModel, tokens: [Int], chunkSize: Int = 512, kvType: KVCacheType = .f16, pool: ThreadPool? = nil,
                progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws {
        let layers = model.config.layerAttention
        let context = KVMethodContext(layers: layers, budget: nil, promptLength: tokens.count, maxNewTokens: 0, kvType: kvType)
        let recorder = RecordingPolicy(layers: layers, full: try KVMethods.make("full", context: context))
        let session = InferenceSession(model: model, policy: recorder, pool: pool)
        session.chunkSize = chunkSize
        lastLogits = try session.prefill(tokens, progress: progress)
        self.tokens = tokens
        self.layers = layers
        chunks = recorder.chunks
        self.pool = pool
    }

    /// Feeds the recorded prompt to `policy` (chunk by chunk, layer by layer), then `finishPrefill`.
    public func replay(into policy: KVPolicy) {
        ThreadPool.install(pool) { replayChunks(into: policy) }
    }

    private func replayChunks(into policy: KVPolicy) {
        let maxTokens = chunks.map { $0[0].tokens }.max() ?? 0
        var scratch = [Float](repeating: 0, count: maxTokens * (layers.map { $0.queryHeads * $0.headDim }.max() ?? 0))
        scratch.withUnsafeMutableBufferPointer { output in
            for chunk in chunks {
                for (layer, recorded) in chunk.enumerated() {
                    recorded.withInput { policy.prefill(layer: layer, $0, output: output.baseAddress!) }
                }
            }
        }
        policy.finishPrefill()
    }

    /// A session over `policy` positioned after the prompt, for a policy that `replay` has filled.
    public func session(model: LanguageModel, policy: KVPolicy) -> InferenceSession {
        InferenceSession(model: model, policy: policy, resumingAfter: tokens, pool: pool)
    }
}

/// One layer's attention input for one chunk, copied.
private struct RecordedInput {
    let queries: [Float], keys: [Float], values: [Float]
    let tokens: Int, firstPosition: Int

    func withInput<R>(_ body: (AttentionInput) -> R) -> R {
        queries.withUnsafeBufferPointer { q in
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    var input = AttentionInput(queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                               tokens: tokens, firstPosition: firstPosition)
                    input.outputNeeded = false
                    return body(input)
                }
            }
        }
    }
}

/// The full cache, plus a copy of every prefill input.
private final class RecordingPolicy: KVPolicy {
    let full: KVPolicy
    let layers: [LayerAttention]
    var chunks: [[RecordedInput]] = []

    init(layers: [LayerAttention], full: KVPolicy) {
        self.layers = layers
        self.full = full
    }

    func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        if layer == 0 { chunks.append([]) }
        let shape = layers[layer]
        let qCount = input.tokens * shape.queryHeads * shape.headDim, kvCount = input.tokens * shape.kvHeads * shape.headDim
        chunks[chunks.count - 1].append(RecordedInput(
            queries: Array(UnsafeBufferPointer(start: input.queries, count: qCount)),
            keys: Array(UnsafeBufferPointer(start: input.keys, count: kvCount)),
            values: Array(UnsafeBufferPointer(start: input.values, count: kvCount)),
            tokens: input.tokens, firstPosition: input.firstPosition))
        full.prefill(layer: layer, input, output: output)
    }

    func finishPrefill() { full.finishPrefill() }

    func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        full.decode(layer: layer, input, output: output)
    }

    var statistics: KVStatistics { full.statistics }
}
