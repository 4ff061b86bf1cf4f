import Foundation
import CKernels

/// Per-page element-wise key minimum and maximum of one KV group (ROCKETKV.md §4.1), over cache slots
/// `0 ..< tokens` split into pages of `pageSize` slots.
///
/// Layout is dimension-major, `[2d][pageCapacity]`: row `i` holds `Kmin` of dimension `i` for every page and
/// row `d + i` its `Kmax`, so HSA reads `k1` contiguous strips. Values are F32 (4 bytes each, counted in
/// `allocatedBytes` and in the read traffic): the bounds are taken from the keys as stored (f16 rounded),
/// and F32 holds those exactly, so they are true bounds of the cached keys.
public final class PageMetadata {
    public let headDim: Int
    public let pageSize: Int
    /// Slots covered.
    public private(set) var tokens = 0
    public private(set) var pageCapacity = 0
    private var storage: UnsafeMutablePointer<Float>?

    public init(headDim: Int, pageSize: Int) {
        precondition(pageSize >= 1)
        self.headDim = headDim
        self.pageSize = pageSize
    }

    deinit { storage?.deallocate() }

    public var pages: Int { (tokens + pageSize - 1) / pageSize }
    public var allocatedBytes: Int { 2 * headDim * pageCapacity * 4 }
    /// Tokens in page `p` (the last page may be partial).
    public func tokens(inPage p: Int) -> Int { min(pageSize, tokens - p * pageSize) }

    /// The strip of `Kmin` (`max: false`) or `Kmax` values of dimension `dim` over all pages.
    public func strip(dim: Int, max: Bool) -> UnsafePointer<Float> {
        UnsafePointer(storage! + ((max ? headDim : 0) + dim) * pageCapacity)
    }

    public func minimum(page: Int, dim: Int) -> Float { strip(dim: dim, max: false)[page] }
    public func maximum(page: Int, dim: Int) -> Float { strip(dim: dim, max: true)[page] }

    /// Makes room for `slots` slots in all (re-laying the strips out when the page capacity grows).
    public func reserve(tokens slots: Int) {
        let needed = (slots + pageSize - 1) / pageSize
        guard needed > pageCapacity else { return }
        let newCapacity = max(needed, pageCapacity * 2)
        let fresh = UnsafeMutablePointer<Float>.allocate(capacity: 2 * headDim * newCapacity)
        if let old = storage {
            for row in 0..<(2 * headDim) { (fresh + row * newCapacity).update(from: old + row * pageCapacity, count: pages) }
            old.deallocate()
        }
        storage = fresh
        pageCapacity = newCapacity
    }

    /// Appends one key at slot `tokens` (§4.2): a new page starts at `min = max = key`, otherwise the page's
    /// bounds widen element-wise.
    public func append(key: UnsafePointer<Float>) {
        if tokens + 1 > pageCapacity * pageSize { reserve(tokens: tokens + 1) }
        let s = tokens, p = s / pageSize, d = headDim, cap = pageCapacity, base = storage!
        if s % pageSize == 0 {
            for i in 0..<d { base[i * cap + p] = key[i]; base[(d + i) * cap + p] = key[i] }
        } else {
            for i in 0..<d {
                base[i * cap + p] = Swift.min(base[i * cap + p], key[i])
                base[(d + i) * cap + p] = Swift.max(base[(d + i) * cap + p], key[i])
            }
        }
        tokens += 1
    }

    /// Appends an f16 key (as stored in a `KVStream`).
    public func append(halfKey: UnsafePointer<UInt16>) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: headDim) { b in
            rk_f16_to_f32(halfKey, b.baseAddress!, Int32(headDim))
            append(key: b.baseAddress!)
        }
    }

    /// Forgets every page (keeps the allocation).
    public func removeAll() { tokens = 0 }

    /// Frees the allocation.
    public func release() {
        storage?.deallocate()
        storage = nil
        tokens = 0
        pageCapacity = 0
    }
}

/// What HSA decided for one KV group in one step (intermediate values are kept for tests and diagnostics).
public struct HSASelection {
    /// Selected cache slots (`min(k2, N)` of them): whole pages in descending score order, then the lowest
    /// slots of a partially taken page (§16.2).
    public var slots: [Int32]
    /// `I1`: the `k1` head dimensions used, largest group `Σ|q|` first.
    public var dims: [Int]
    /// Group sign per dimension of `dims` (`true` = +1, uses `Kmax`).
    public var positive: [Bool]
    /// `ŝ[h][p]`: approximate page logits per query head of the group.
    public var pageScores: [[Float]]
    /// `τ_h` per query head.
    public var temperatures: [Float]
    /// `ω` per page: the group-mean per-token probability of each page's tokens.
    public var pageProbabilities: [Float]
    /// Pages by descending `ω` (then lower page first).
    public var pageOrder: [Int]
}

/// Hybrid Sparse Attention, stage 2 of RocketKV (ROCKETKV.md §4.3), for one KV group.
public enum HSA {
    /// Chooses the slots to attend for the group's queries `[groupSize][headDim]` (post-RoPE) over the slots
    /// described by `metadata` (already updated with the current token, §4.2).
    ///
    /// Softmax and group mean are computed per page with page token counts (§14), in F32; ties rank the lower
    /// dimension / page first.
    public static func select(queries: UnsafePointer<Float>, groupSize G: Int, metadata: PageMetadata,
                              k1: Int, k2: Int) -> HSASelection {
        let d = metadata.headDim, N = metadata.tokens, pages = metadata.pages
        // Step 1–2: dimensions and group signs.
        var a = [Float](repeating: 0, count: d), sum = [Float](repeating: 0, count: d)
        for h in 0..<G {
            let q = queries + h * d
            for i in 0..<d { a[i] += abs(q[i]); sum[i] += q[i] }
        }
        let dims = Array(a.indices.sorted { a[$0] != a[$1] ? a[$0] > a[$1] : $0 < $1 }.prefix(min(max(1, k1), d)))
        let positive = dims.map { sum[$0] > 0 }
        // Steps 3–5: page logits per head from the sign-selected strips, and temperatures.
        var scores = [[Float]](repeating: [Float](repeating: 0, count: pages), count: G)
        var temperatures = [Float](repeating: 1, count: G)
        for h in 0..<G {
            let q = queries + h * d
            scores[h].withUnsafeMutableBufferPointer { s in
                for (i, dim) in dims.enumerated() {
                    let strip = metadata.strip(dim: dim, max: positive[i]), qi = q[dim]
                    for p in 0..<pages { s[p] += qi * strip[p] }
                }
            }
            var selected: Float = 0, total: Float = 0
            for dim in dims { selected += abs(q[dim]) }
            for i in 0..<d { total += abs(q[i]) }
            temperatures[h] = total > 0 ? (Float(d) * selected / total).squareRoot() : Float(d).squareRoot()
        }
        // Steps 6–8: per-token softmax per head done per page, then the group mean.
        var omega = [Float](repeating: 0, count: pages)
        for h in 0..<G {
            let inv = 1 / temperatures[h]
            var m = -Float.infinity
            for p in 0..<pages { m = max(m, scores[h][p] * inv) }
            var e = [Float](repeating: 0, count: pages)
            var z: Double = 0
            for p in 0..<pages {
                e[p] = expf(scores[h][p] * inv - m)
                z += Double(metadata.tokens(inPage: p)) * Double(e[p])
            }
            let scale = Float(1 / (z * Double(G)))
            for p in 0..<pages { omega[p] += e[p] * scale }
        }
        // Step 9: top-k2 tokens = whole pages by score, lowest slots of a partial page.
        let order = omega.indices.sorted { omega[$0] != omega[$1] ? omega[$0] > omega[$1] : $0 < $1 }
        let want = min(k2, N)
        var slots: [Int32] = []
        slots.reserveCapacity(want)
        for p in order where slots.count < want {
            let first = p * metadata.pageSize
            let take = min(metadata.tokens(inPage: p), want - slots.count)
            for s in first..<(first + take) { slots.append(Int32(s)) }
        }
        return HSASelection(slots: slots, dims: dims, positive: positive, pageScores: scores, temperatures: temperatures,
                            pageProbabilities: omega, pageOrder: order)
    }

    /// Exact attention of the group's query heads over the selected slots of `stream` (§4.3 step 10), in
    /// llama.cpp's decode arithmetic (`Attention.sparse`).
    public static func attend(queries: UnsafePointer<Float>, groupSize G: Int, stream: KVStream, slots: [Int32],
                              scale: Float, output: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        // The single-token summation order needs rows of a multiple of 32 values; use the batched one otherwise.
        let batched = d % 32 != 0
        slots.withUnsafeBufferPointer { s in
            for h in 0..<G {
                Attention.sparse(query: queries + h * d, stream: stream, slots: s, scale: scale, output: output + h * d, batched: batched)
            }
        }
    }

    /// Bytes HSA reads for one group in one step (§7.2): `k1·n_pg` F32 metadata values plus `2d` f16 values per
    /// attended slot.
    public static func bytesRead(k1: Int, pages: Int, attended: Int, headDim d: Int) -> Int {
        k1 * pages * 4 + attended * 2 * d * 2
    }
}

/// One HSA decode step of a layer for every KV group (in parallel over groups). `slotMaps[g]`, when given,
/// maps metadata slots to stream slots (RocketKV-MT's index list into the full cache). Returns the bytes read.
func hsaDecodeLayer(_ input: AttentionInput, streams: [KVStream], metadata: [PageMetadata], slotMaps: [[Int32]]?,
                    shape: AttentionShape, k1: Int, k2: Int, output: UnsafeMutablePointer<Float>) -> Int {
    let G = shape.groupSize, d = shape.headDim
    var bytes = [Int](repeating: 0, count: shape.kvHeads)
    bytes.withUnsafeMutableBufferPointer { bytesBuffer in
        let bytesOut = bytesBuffer.baseAddress!
        ThreadPool.parallelFor(shape.kvHeads) { groups in
            for g in groups {
                let q = input.queries + g * G * d
                var selection = HSA.select(queries: q, groupSize: G, metadata: metadata[g], k1: k1, k2: k2)
                if let map = slotMaps?[g] { selection.slots = selection.slots.map { map[Int($0)] } }
                HSA.attend(queries: q, groupSize: G, stream: streams[g], slots: selection.slots, scale: shape.scale,
                           output: output + g * G * d)
                bytesOut[g] = HSA.bytesRead(k1: selection.dims.count, pages: metadata[g].pages,
                                            attended: selection.slots.count, headDim: d)
            }
        }
    }
    return bytes.reduce(0, +)
}
