/// The last `w` query rows (post-RoPE, all query heads) of the current prompt, per layer, kept across prefill
/// chunks for SnapKV's scoring at the end of the prompt (§14; RocketKV stage 1 and the SnapKV baseline).
/// Reset after each turn's eviction.
// @unchecked: unsynchronized; pool tasks only read it (`keptSlots`), `record` and `reset` run outside jobs.
final class QueryWindow: @unchecked Sendable {
    let window: Int, rowSize: Int
    private var rows: [[Float]]
    /// Rows written this turn, per layer.
    private var written: [Int]

    init(layers: Int, window: Int, queryHeads: Int, headDim: Int) {
        self.window = window
        rowSize = queryHeads * headDim
        rows = Array(repeating: [], count: layers)
        written = Array(repeating: 0, count: layers)
    }

    var allocatedBytes: Int { rows.reduce(0) { $0 + $1.count * 4 } }

    func record(layer: Int, _ input: AttentionInput) {
        if rows[layer].isEmpty { rows[layer] = [Float](repeating: 0, count: window * rowSize) }
        let first = max(0, input.tokens - window)
        rows[layer].withUnsafeMutableBufferPointer { b in
            for t in first..<input.tokens {
                let r = (written[layer] + t - first) % window
                (b.baseAddress! + r * rowSize).update(from: input.queries + t * rowSize, count: rowSize)
            }
        }
        written[layer] += input.tokens - first
    }

    /// Rows available for `layer` this turn (at most `window`).
    func count(layer: Int) -> Int { min(window, written[layer]) }

    /// The window rows of query heads `heads` (a KV group, or one head), oldest first: `[count][heads][headDim]`.
    func rows(layer: Int, heads: Range<Int>, headDim d: Int) -> [Float] {
        let n = count(layer: layer), width = heads.count * d
        var out = [Float](repeating: 0, count: n * width)
        for a in 0..<n {
            let r = (written[layer] - n + a) % window
            for i in 0..<width { out[a * width + i] = rows[layer][r * rowSize + heads.lowerBound * d + i] }
        }
        return out
    }

    func reset() {
        for l in rows.indices { rows[l] = []; written[l] = 0 }
    }
}

extension QueryWindow {
    /// SnapKV's selection (`SnapKVScoring.keptSlots`) for query heads `heads` voting over `stream` with this
    /// turn's window queries: a KV group's heads (RocketKV stage 1) or one head (the SnapKV baseline). Nil when
    /// the stream fits `promptBudget` or the turn recorded no query: nothing to evict.
    func keptSlots(layer: Int, heads: Range<Int>, stream: KVStream, scale: Float, promptBudget: Int,
                   kernel: Int) -> (slots: [Int], pooled: [Float])? {
        let windowRows = count(layer: layer), d = stream.headDim
        guard windowRows > 0, stream.count > promptBudget else { return nil }
        let queries = rows(layer: layer, heads: heads, headDim: d)
        return queries.withUnsafeBufferPointer {
            SnapKVScoring.keptSlots(windowQueries: $0.baseAddress!, windowRows: windowRows, groupSize: heads.count, keys: .f16(stream.keys),
                                    count: stream.count, headDim: d, scale: scale, promptBudget: promptBudget, kernel: kernel)
        }
    }
}
