import CKernels

/// The Llama architecture (Llama 2/3, SmolLM, ...): the weights and the whole forward pass in one place.
///
/// Per layer: RMSNorm → Q, K, V projections → RoPE → attention through the `KVPolicy` → output projection
/// → residual; RMSNorm → SwiGLU feed-forward → residual. Weights stay in their quantized blocks in the
/// memory-mapped file.
// @unchecked: every property is a `let`; the pointers are into the read-only mapping of `file`, which it keeps alive.
public final class LlamaModel: @unchecked Sendable {
    public let config: ModelConfig
    public let file: GGUFFile

    struct Layer {
        let attentionNorm: UnsafePointer<Float>
        let query, key, value, attentionOutput: WeightMatrix
        let feedForwardNorm: UnsafePointer<Float>
        let gate, up, down: WeightMatrix
    }

    let tokenEmbedding: WeightMatrix
    let layers: [Layer]
    let outputNorm: UnsafePointer<Float>
    /// The unembedding; the token embedding itself when the model ties them.
    let output: WeightMatrix

    public init(file: GGUFFile) throws {
        let config = try ModelConfig(file: file)
        self.config = config
        self.file = file
        let dim = config.embeddingLength, kvDim = config.kvHeads * config.headDim, qDim = config.queryHeads * config.headDim

        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            guard let t = file.tensor(named: name) else { throw GGUFError("missing tensor '\(name)'") }
            guard t.shape.count == 2, t.shape[0] == columns, t.shape[1] == rows else {
                throw GGUFError("tensor '\(name)' has shape \(t.shape), expected [\(columns), \(rows)]")
            }
            return WeightMatrix(type: t.type, rows: rows, columns: columns, data: file.data(of: t))
        }
        func vector(_ name: String, count: Int) throws -> UnsafePointer<Float> {
            guard let t = file.tensor(named: name) else { throw GGUFError("missing tensor '\(name)'") }
            guard t.type == .f32, t.elementCount == count else {
                throw GGUFError("tensor '\(name)' must be F32 with \(count) elements (has \(t.type.name), \(t.elementCount))")
            }
            return file.data(of: t).assumingMemoryBound(to: Float.self)
        }

        tokenEmbedding = try matrix("token_embd.weight", rows: config.vocabularySize, columns: dim)
        layers = try (0..<config.layers).map { i in
            Layer(attentionNorm: try vector("blk.\(i).attn_norm.weight", count: dim),
                  query: try matrix("blk.\(i).attn_q.weight", rows: qDim, columns: dim),
                  key: try matrix("blk.\(i).attn_k.weight", rows: kvDim, columns: dim),
                  value: try matrix("blk.\(i).attn_v.weight", rows: kvDim, columns: dim),
                  attentionOutput: try matrix("blk.\(i).attn_output.weight", rows: dim, columns: qDim),
                  feedForwardNorm: try vector("blk.\(i).ffn_norm.weight", count: dim),
                  gate: try matrix("blk.\(i).ffn_gate.weight", rows: config.feedForwardLength, columns: dim),
                  up: try matrix("blk.\(i).ffn_up.weight", rows: config.feedForwardLength, columns: dim),
                  down: try matrix("blk.\(i).ffn_down.weight", rows: dim, columns: config.feedForwardLength))
        }
        outputNorm = try vector("output_norm.weight", count: dim)
        output = file.tensor(named: "output.weight") == nil
            ? tokenEmbedding
            : try matrix("output.weight", rows: config.vocabularySize, columns: dim)
    }

    /// Bytes of weights read for one decoded token (every matrix once, plus one embedding row).
    public var weightBytesPerToken: Int {
        let perLayer = layers.first.map { l in
            [l.query, l.key, l.value, l.attentionOutput, l.gate, l.up, l.down].reduce(0) { $0 + $1.rows * $1.rowBytes }
        } ?? 0
        return perLayer * layers.count + output.rows * output.rowBytes + tokenEmbedding.rowBytes
    }

    /// Which positions need logits.
    public enum Logits { case last, all, none }

    /// Runs `tokens` (absolute positions from `position`) through the model, with attention through `policy`.
    ///
    /// `decode` selects the policy's decode path (one token) instead of prefill. Returns the logits
    /// (`[rows][vocabularySize]`, rows as requested) in a buffer of `state`, valid until its next use.
    public func forward(_ tokens: [Int], from position: Int, policy: KVPolicy, decode: Bool = false,
                        logits: Logits = .last, state: ForwardState) -> UnsafeBufferPointer<Float> {
        let n = tokens.count
        let c = config
        let dim = c.embeddingLength, hd = c.headDim, qDim = c.queryHeads * hd, kvDim = c.kvHeads * hd, ff = c.feedForwardLength
        precondition(n > 0 && (!decode || n == 1))
        state.reserve(tokens: n, config: c)
        let x = state.x, xb = state.xb, q = state.q, k = state.k, v = state.v, attention = state.attention
        let hb = state.hb, hb2 = state.hb2, scratch = state.scratch

        // Token embeddings.
        for (t, token) in tokens.enumerated() {
            precondition(token >= 0 && token < c.vocabularySize, "token id \(token) out of range")
            dequantize(tokenEmbedding.type, from: tokenEmbedding.data + token * tokenEmbedding.rowBytes, count: dim, into: x + t * dim)
        }

        for (l, layer) in layers.enumerated() {
            // Attention block.
            for t in 0..<n { Ops.rmsNorm(x + t * dim, weight: layer.attentionNorm, epsilon: c.rmsEpsilon, count: dim, output: xb + t * dim) }
            matmul([layer.query, layer.key, layer.value], input: xb, tokens: n, outputs: [q, k, v], scratch: scratch)
            for t in 0..<n {
                Ops.rope(q + t * qDim, heads: c.queryHeads, headDim: hd, ropeDims: c.ropeDims, position: position + t, base: c.ropeBase)
                Ops.rope(k + t * kvDim, heads: c.kvHeads, headDim: hd, ropeDims: c.ropeDims, position: position + t, base: c.ropeBase)
            }
            let input = AttentionInput(queries: q, keys: k, values: v, tokens: n, firstPosition: position)
            if decode { policy.decode(layer: l, input, output: attention) } else { policy.prefill(layer: l, input, output: attention) }
            matmul(layer.attentionOutput, input: attention, tokens: n, output: xb, scratch: scratch)
            Ops.add(x, xb, count: n * dim)

            // Feed-forward block (SwiGLU).
            for t in 0..<n { Ops.rmsNorm(x + t * dim, weight: layer.feedForwardNorm, epsilon: c.rmsEpsilon, count: dim, output: xb + t * dim) }
            matmul([layer.gate, layer.up], input: xb, tokens: n, outputs: [hb, hb2], scratch: scratch)
            rk_swiglu(hb, hb2, Int32(n * ff))
            matmul(layer.down, input: hb, tokens: n, output: xb, scratch: scratch)
            Ops.add(x, xb, count: n * dim)
        }

        // Final norm and unembedding for the requested rows.
        let first: Int, rows: Int
        switch logits {
        case .none: return UnsafeBufferPointer(start: state.logits, count: 0)
        case .last: (first, rows) = (n - 1, 1)
        case .all: (first, rows) = (0, n)
        }
        state.reserveLogits(rows: rows, vocabulary: c.vocabularySize)
        for t in 0..<rows { Ops.rmsNorm(x + (first + t) * dim, weight: outputNorm, epsilon: c.rmsEpsilon, count: dim, output: xb + t * dim) }
        matmul(output, input: xb, tokens: rows, output: state.logits, scratch: scratch)
        return UnsafeBufferPointer(start: state.logits, count: rows * c.vocabularySize)
    }
}

/// Activation buffers of a forward pass, allocated once for the largest chunk and reused.
public final class ForwardState {
    private(set) var capacity = 0
    private(set) var logitsCapacity = 0
    var x, xb, q, k, v, attention, hb, hb2: UnsafeMutablePointer<Float>
    private(set) var logits: UnsafeMutablePointer<Float>
    let scratch = MatmulScratch()

    public init() {
        func placeholder() -> UnsafeMutablePointer<Float> { .allocate(capacity: 1) }
        (x, xb, q, k, v) = (placeholder(), placeholder(), placeholder(), placeholder(), placeholder())
        (attention, hb, hb2, logits) = (placeholder(), placeholder(), placeholder(), placeholder())
    }

    deinit {
        for p in [x, xb, q, k, v, attention, hb, hb2, logits] { p.deallocate() }
    }

    func reserve(tokens n: Int, config c: ModelConfig) {
        guard n > capacity else { return }
        for p in [x, xb, q, k, v, attention, hb, hb2] { p.deallocate() }
        let dim = c.embeddingLength, qDim = c.queryHeads * c.headDim, kvDim = c.kvHeads * c.headDim
        x = .allocate(capacity: n * dim)
        xb = .allocate(capacity: n * max(dim, qDim))
        q = .allocate(capacity: n * qDim)
        k = .allocate(capacity: n * kvDim)
        v = .allocate(capacity: n * kvDim)
        attention = .allocate(capacity: n * qDim)
        hb = .allocate(capacity: n * c.feedForwardLength)
        hb2 = .allocate(capacity: n * c.feedForwardLength)
        capacity = n
    }

    func reserveLogits(rows: Int, vocabulary: Int) {
        guard rows * vocabulary > logitsCapacity else { return }
        logits.deallocate()
        logits = .allocate(capacity: rows * vocabulary)
        logitsCapacity = rows * vocabulary
    }
}
