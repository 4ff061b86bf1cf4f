import Foundation
import CKernels

/// Deterministic selections shared by the baseline policies.
public enum KVSelect {
    /// Indices of the `k` largest of `values` (value descending, ties to the lower index; NaN counts as −∞),
    /// returned in ascending index order. `k ≥ count` selects everything.
    public static func topIndices(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        rankedTop(values, k).sorted()
    }

    /// The same `k` indices, best first.
    public static func rankedTop(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        let k = max(0, min(k, values.count))
        guard k > 0 else { return [] }
        return [Int32](unsafeUninitializedCapacity: k) { out, initialized in
            initialized = Int(rk_top_indices(values.baseAddress!, Int32(values.count), Int32(k), out.baseAddress!))
        }.map(Int.init)
    }

    public static func rankedTop(_ values: [Float], _ k: Int) -> [Int] {
        values.withUnsafeBufferPointer { rankedTop($0, k) }
    }

    public static func topIndices(_ values: [Float], _ k: Int) -> [Int] {
        values.withUnsafeBufferPointer { topIndices($0, k) }
    }
}

/// SnapKV's scoring (ROCKETKV.md §3), written once for its two users: RocketKV stage 1 selects per GQA group
/// (a group's query heads vote together, κ = 63) and the SnapKV baseline per query head (a "group" of one
/// head, κ = 7; §9.2: "same scoring as §3"). Top `B_p − w'` prefix tokens by pooled vote plus the
/// observation window.
///
/// Arithmetic is F32 (§16.5): logits `⟨q, k⟩/√d` with keys as stored, softmax over every visible key (window
/// included), masked entries exactly 0, window columns dropped after the softmax, votes summed over window
/// rows and the group's query heads.
public enum SnapKVScoring {
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

    /// The slots kept for one KV group, in cache order: the selected prefix slots ascending (pooled vote
    /// descending, ties to the lower slot, §16.1), then the window, and the pooled votes of the prefix.
    /// `n ≤ promptBudget` keeps everything (and pools nothing). The window is `w' = min(window, windowRows, promptBudget)`
    /// (project decision: a budget below the window keeps the last `B_p` tokens only).
    public static func keptSlots(windowQueries: UnsafePointer<Float>, windowRows: Int, groupSize: Int, keys: Keys,
                                 count n: Int, headDim d: Int, scale: Float, promptBudget: Int,
                                 kernel: Int) -> (slots: [Int], pooled: [Float]) {
        if n <= promptBudget { return (Array(0..<n), []) }
        let w = votingRows(windowRows, promptBudget: promptBudget)
        // The last `w` window rows are the ones for the last `w` tokens.
        let rows = windowQueries + (windowRows - w) * groupSize * d
        let v = votes(windowQueries: rows, windowRows: w, groupSize: groupSize, keys: keys, count: n, headDim: d, scale: scale)
        return select(votes: v, count: n, promptBudget: promptBudget, kernel: kernel)
    }

    /// `w'`: the window rows that vote (and are kept) for a budget of `promptBudget` tokens.
    public static func votingRows(_ windowRows: Int, promptBudget: Int) -> Int {
        let w = min(windowRows, promptBudget)
        precondition(w >= 1, "stage 1 needs at least one window query")
        return w
    }

    /// §3 steps 4–5 on votes already summed: pool the prefix votes (`n − w'` of them), keep the best
    /// `B_p − w'` prefix slots and the window `w'`, in cache order; also returns the pooled votes.
    public static func select(votes v: [Float], count n: Int, promptBudget: Int, kernel: Int) -> (slots: [Int], pooled: [Float]) {
        let w = n - v.count
        precondition(w >= 1 && w <= promptBudget, "votes cover the prefix before a window of 1...B_p tokens")
        let pooled = maxPool(v, kernel: kernel)
        return (KVSelect.topIndices(pooled, promptBudget - w) + Array((n - w)..<n), pooled)
    }
}
