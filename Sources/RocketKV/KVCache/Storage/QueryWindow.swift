/// The last `w` query rows (post-RoPE, all query heads) of the current prompt, per layer, kept across prefill
/// chunks for SnapKV's scoring at the end of the prompt (§14; RocketKV stage 1 and the SnapKV baseline).
/// Reset after each turn's eviction.
// @unchecked: unsynchronized; pool tasks only read it (`keptSlots`), `record` and `reset` run outside jobs.
final class QueryWindow: @unchecked Sendable {
    let window: Int, rowSize: Int
    /// Per layer, this turn's most recent query rows, oldest first: at most `2 · window` rows and never more
    /// than the turn has seen, so a window far longer than the prompt costs nothing.
    private var rows: [[Float]]

    init(layers: Int, window: Int, queryHeads: Int, headDim: Int) {
        self.window = window
        rowSize = queryHeads * headDim
        rows = Array(repeating: [], count: layers)
    }

    var allocatedBytes: Int { rows.reduce(0) { $0 + $1.count * 4 } }

    func record(layer: Int, _ input: AttentionInput) {
        let first = max(0, input.tokens - window)
        rows[layer].append(contentsOf: UnsafeBufferPointer(start: input.queries + first * rowSize, count: (input.tokens - first) * rowSize))
        let held = rows[layer].count / rowSize
        if held > 2 * window { rows[layer].removeFirst((held - window) * rowSize) }
    }

    /// Rows available for `layer` this turn (at most `window`).
    func count(layer: Int) -> Int { min(window, rows[layer].count / rowSize) }

    /// The window rows of query heads `heads` (a KV group, or one head), oldest first: `[count][heads][headDim]`.
    func rows(layer: Int, heads: Range<Int>, headDim d: Int) -> [Float] {
        let n = count(layer: layer), width = heads.count * d
        let oldest = rows[layer].count / rowSize - n
        var out = [Float](repeating: 0, count: n * width)
        for a in 0..<n {
            let row = (oldest + a) * rowSize + heads.lowerBound * d
            for i in 0..<width { out[a * width + i] = rows[layer][row + i] }
        }
        return out
    }

    func reset() {
        for l in rows.indices { rows[l] = [] }
    }
}

extension QueryWindow {
    /// SnapKV's selection (`SnapKVScoring.keptSlots`) for query heads `heads` voting over `stream` with this
    /// turn's window queries: a KV group's heads (RocketKV stage 1) or one head (the SnapKV baseline). Nil when
    /// the stream fits `promptBudget` or the turn recorded no query: nothing to evict.
    func keptSlots(layer: Int, heads: Range<Int>, stream: KVStream, scale: Float, promptBudget: Int,
                   kernel: Int) -> (slots: [Int], pooled: [Float])? {
        votes(layer: layer, heads: heads, stream: stream, scale: scale, promptBudget: promptBudget)
            .map { SnapKVScoring.select(votes: $0, count: stream.count, promptBudget: promptBudget, kernel: kernel) }
    }

    /// The summed window votes (§3 steps 1–3) of query heads `heads` for the prefix slots of `stream`, the
    /// `n − w'` slots before the voting window; nil where `keptSlots` is nil.
    func votes(layer: Int, heads: Range<Int>, stream: KVStream, scale: Float, promptBudget: Int) -> [Float]? {
        let windowRows = count(layer: layer), d = stream.headDim, n = stream.count
        guard windowRows > 0, n > promptBudget else { return nil }
        let w = SnapKVScoring.votingRows(windowRows, promptBudget: promptBudget)
        // The last `w` rows are the ones for the last `w` tokens.
        let queries = Array(rows(layer: layer, heads: heads, headDim: d).suffix(w * heads.count * d))
        // The keys as stored: f16 rows as they are, quantized rows dequantized.
        var dequantized = [Float]()
        if stream.kvType.isQuantized {
            dequantized = [Float](unsafeUninitializedCapacity: n * d) { buffer, initialized in
                for j in 0..<n { stream.key(j, into: buffer.baseAddress! + j * d) }
                initialized = n * d
            }
        }
        return queries.withUnsafeBufferPointer { q in
            dequantized.withUnsafeBufferPointer { k in
                SnapKVScoring.votes(windowQueries: q.baseAddress!, windowRows: w, groupSize: heads.count,
                                    keys: stream.kvType.isQuantized ? .f32(k.baseAddress!) : .f16(stream.halfKeys),
                                    count: n, headDim: d, scale: scale)
            }
        }
    }
}
