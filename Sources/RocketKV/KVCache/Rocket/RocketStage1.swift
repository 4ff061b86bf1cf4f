import Foundation
import CKernels

/// RocketKV stage 1 (ROCKETKV.md §3): SnapKV with one selection per GQA group, max pooling with a wide
/// kernel (κ = 63), top `B_p − w'` prefix tokens by pooled vote plus the observation window.
///
/// Arithmetic is F32 (§16.5): logits `⟨q, k⟩/√d` with keys as stored, softmax over every visible key (window
/// included), masked entries exactly 0, window columns dropped after the softmax, votes summed over window
/// rows and the group's query heads.
public enum RocketStage1 {
    /// Cached keys of one KV group as rows of `headDim` values, slot `j` at row `j`.
    public enum Keys {
        case f16(UnsafePointer<UInt16>)
        case f32(UnsafePointer<Float>)
    }

    /// Group votes `v[j]` for the prefix slots `0 ..< n − w'`, §3 steps 1–3.
    ///
    /// `windowQueries` is `[w'][groupSize][headDim]` (the last `w'` query rows of the prompt, post-RoPE);
    /// window row `a` is the token at slot `n − w' + a` and sees slots `0 ... n − w' + a`.
    public static func votes(windowQueries: UnsafePointer<Float>, windowRows: Int, groupSize: Int, keys: Keys,
                             count n: Int, headDim d: Int, scale: Float) -> [Float] {
        precondition(windowRows >= 1 && windowRows <= n)
        let prefix = n - windowRows
        var votes = [Float](repeating: 0, count: prefix)
        var logits = [Float](repeating: 0, count: n)
        logits.withUnsafeMutableBufferPointer { lb in
            votes.withUnsafeMutableBufferPointer { vb in
                let z = lb.baseAddress!
                for a in 0..<windowRows {
                    let visible = prefix + a + 1
                    for h in 0..<groupSize {
                        let q = windowQueries + (a * groupSize + h) * d
                        var m = -Float.infinity
                        switch keys {
                        case .f16(let k):
                            for j in 0..<visible { z[j] = rk_dot_f16_f32(k + j * d, q, Int32(d)) * scale; m = max(m, z[j]) }
                        case .f32(let k):
                            for j in 0..<visible { z[j] = rk_dot_f32(k + j * d, q, Int32(d)) * scale; m = max(m, z[j]) }
                        }
                        var total: Double = 0
                        for j in 0..<visible { let e = expf(z[j] - m); z[j] = e; total += Double(e) }
                        let inv = Float(1 / total)
                        for j in 0..<prefix { vb[j] += z[j] * inv }
                    }
                }
            }
        }
        return votes
    }

    /// 1-D max pooling, stride 1, kernel `κ` (odd), padding `⌊κ/2⌋`, output length = input length (§3 step 4).
    public static func maxPool(_ v: [Float], kernel: Int) -> [Float] {
        let r = kernel / 2, n = v.count
        guard r > 0, n > 0 else { return v }
        // Sliding-window maximum with a monotone deque of indices: O(n) for any kernel.
        var out = [Float](repeating: 0, count: n)
        var deque = [Int](repeating: 0, count: n)
        var head = 0, tail = 0, next = 0
        for j in 0..<n {
            while next < n && next <= j + r {
                while tail > head && v[deque[tail - 1]] <= v[next] { tail -= 1 }
                deque[tail] = next; tail += 1; next += 1
            }
            while deque[head] < j - r { head += 1 }
            out[j] = v[deque[head]]
        }
        return out
    }

    /// The `count` largest values' indices with the mandatory tie rule of §16.1 (value descending, then lower
    /// index first), returned in ascending index order ([A]).
    public static func topIndices(_ pooled: [Float], count: Int) -> [Int] {
        let k = min(max(0, count), pooled.count)
        guard k < pooled.count else { return Array(pooled.indices) }
        let order = pooled.indices.sorted { pooled[$0] != pooled[$1] ? pooled[$0] > pooled[$1] : $0 < $1 }
        return order[0..<k].sorted()
    }

    /// The slots kept for one KV group, in cache order: the selected prefix slots ascending, then the window.
    /// `n ≤ promptBudget` keeps everything. The window is `w' = min(window, windowRows, promptBudget)`
    /// (project decision: a budget below the window keeps the last `B_p` tokens only).
    public static func keptSlots(windowQueries: UnsafePointer<Float>, windowRows: Int, groupSize: Int, keys: Keys,
                                 count n: Int, headDim d: Int, scale: Float, promptBudget: Int, kernel: Int) -> [Int] {
        if n <= promptBudget { return Array(0..<n) }
        let w = min(windowRows, promptBudget)
        precondition(w >= 1, "stage 1 needs at least one window query")
        // The last `w` window rows are the ones for the last `w` tokens.
        let rows = windowQueries + (windowRows - w) * groupSize * d
        let v = votes(windowQueries: rows, windowRows: w, groupSize: groupSize, keys: keys, count: n, headDim: d, scale: scale)
        let pooled = maxPool(v, kernel: kernel)
        return topIndices(pooled, count: promptBudget - w) + Array((n - w)..<n)
    }
}

/// The last `w` query rows (post-RoPE, all query heads) of the current prompt, per layer, kept across prefill
/// chunks for stage 1 (§14). Reset after each turn's eviction.
final class QueryWindow {
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

    /// The window rows of KV group `group`, oldest first: `[count][groupSize][headDim]`.
    func groupRows(layer: Int, group: Int, groupSize: Int, headDim d: Int) -> [Float] {
        let n = count(layer: layer)
        var out = [Float](repeating: 0, count: n * groupSize * d)
        for a in 0..<n {
            let r = (written[layer] - n + a) % window
            for i in 0..<(groupSize * d) { out[(a * groupSize) * d + i] = rows[layer][r * rowSize + group * groupSize * d + i] }
        }
        return out
    }

    func reset() {
        for l in rows.indices { rows[l] = []; written[l] = 0 }
    }
}
