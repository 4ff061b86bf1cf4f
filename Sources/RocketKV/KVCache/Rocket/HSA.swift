import Foundation
import CKernels

/// Per-page element-wise key minimum and maximum of one KV group (ROCKETKV.md §4.1), over cache slots
/// `0 ..< tokens` split into pages of `pageSize` slots.
///
/// Layout is dimension-major, `[2d][pageCapacity]`: row `i` holds `Kmin` of dimension `i` for every page and
/// row `d + i` its `Kmax`, so HSA reads `k1` contiguous strips. With `pageSize` 1, min = max = the key, so only
/// the `d` rows of a transposed key copy are stored (as [E] does).
///
/// Precision: the policies use `.f16`. The keys they bound are the f16 keys of the cache, and the minimum or
/// maximum of f16 values is one of them, so f16 metadata is exact (true bounds, no rounding) at 2 bytes per
/// value. `.f32` (4 bytes) is for keys that are not f16 values (the F32 conformance vector of §4.5).
public final class PageMetadata {
    public enum Precision: Sendable { case f16, f32 }

    public let headDim: Int
    public let pageSize: Int
    public let precision: Precision
    /// Slots covered.
    public private(set) var tokens = 0
    public private(set) var pageCapacity = 0
    private var storage: UnsafeMutableRawPointer?
    private var scratch: [Float]

    public init(headDim: Int, pageSize: Int, precision: Precision = .f32) {
        precondition(pageSize >= 1)
        self.headDim = headDim
        self.pageSize = pageSize
        self.precision = precision
        scratch = [Float](repeating: 0, count: headDim)
    }

    deinit { storage?.deallocate() }

    public var pages: Int { (tokens + pageSize - 1) / pageSize }
    /// Bytes per stored value.
    public var elementBytes: Int { precision == .f16 ? 2 : 4 }
    /// Stored rows: `2d` (min and max), or `d` for pages of one slot.
    public var rows: Int { pageSize == 1 ? headDim : 2 * headDim }
    public var allocatedBytes: Int { rows * pageCapacity * elementBytes }
    /// Tokens in page `p` (the last page may be partial).
    public func tokens(inPage p: Int) -> Int { min(pageSize, tokens - p * pageSize) }

    private func row(dim: Int, max: Bool) -> Int { (max && pageSize > 1 ? headDim : 0) + dim }

    /// The strip of `Kmin` (`max: false`) or `Kmax` values of dimension `dim` over all pages (`.f32` storage).
    public func strip(dim: Int, max: Bool) -> UnsafePointer<Float> {
        precondition(precision == .f32)
        return UnsafePointer(storage!.assumingMemoryBound(to: Float.self) + row(dim: dim, max: max) * pageCapacity)
    }

    /// The same strip as f16 bit patterns (`.f16` storage).
    public func halfStrip(dim: Int, max: Bool) -> UnsafePointer<UInt16> {
        precondition(precision == .f16)
        return UnsafePointer(storage!.assumingMemoryBound(to: UInt16.self) + row(dim: dim, max: max) * pageCapacity)
    }

    private func value(row r: Int, page: Int) -> Float {
        switch precision {
        case .f32: return storage!.assumingMemoryBound(to: Float.self)[r * pageCapacity + page]
        case .f16: return Float(Float16(bitPattern: storage!.assumingMemoryBound(to: UInt16.self)[r * pageCapacity + page]))
        }
    }

    public func minimum(page: Int, dim: Int) -> Float { value(row: row(dim: dim, max: false), page: page) }
    public func maximum(page: Int, dim: Int) -> Float { value(row: row(dim: dim, max: true), page: page) }

    /// Makes room for `slots` slots in all (re-laying the strips out when the page capacity grows).
    public func reserve(tokens slots: Int) {
        let needed = (slots + pageSize - 1) / pageSize
        guard needed > pageCapacity else { return }
        let newCapacity = max(needed, pageCapacity * 2), e = elementBytes
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: rows * newCapacity * e, alignment: 64)
        if let old = storage {
            for r in 0..<rows { (fresh + r * newCapacity * e).copyMemory(from: old + r * pageCapacity * e, byteCount: pages * e) }
            old.deallocate()
        }
        storage = fresh
        pageCapacity = newCapacity
    }

    /// Appends one key at slot `tokens` (§4.2): a new page starts at `min = max = key`, otherwise the page's
    /// bounds widen element-wise. With `.f16` storage the key must be f16-representable (bounds stay exact).
    public func append(key: UnsafePointer<Float>) {
        if tokens + 1 > pageCapacity * pageSize { reserve(tokens: tokens + 1) }
        let s = tokens, p = s / pageSize, d = headDim, cap = pageCapacity, opens = s % pageSize == 0
        switch precision {
        case .f32:
            let base = storage!.assumingMemoryBound(to: Float.self)
            for i in 0..<d {
                let lo = i * cap + p, hi = row(dim: i, max: true) * cap + p
                if opens { base[lo] = key[i]; base[hi] = key[i] }
                else { base[lo] = Swift.min(base[lo], key[i]); base[hi] = Swift.max(base[hi], key[i]) }
            }
        case .f16:
            let base = storage!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<d {
                let lo = i * cap + p, hi = row(dim: i, max: true) * cap + p
                if opens {
                    let h = Float16(key[i]).bitPattern
                    base[lo] = h; base[hi] = h
                } else {
                    if key[i] < Float(Float16(bitPattern: base[lo])) { base[lo] = Float16(key[i]).bitPattern }
                    if key[i] > Float(Float16(bitPattern: base[hi])) { base[hi] = Float16(key[i]).bitPattern }
                }
            }
        }
        tokens += 1
    }

    /// Appends an f16 key (as stored in a `KVStream`).
    public func append(halfKey: UnsafePointer<UInt16>) {
        scratch.withUnsafeMutableBufferPointer { b in
            rk_f16_to_f32(halfKey, b.baseAddress!, Int32(headDim))
            append(key: UnsafePointer(b.baseAddress!))
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
    /// `ŝ[h][p]`: approximate page logits per query head of the group (split from the flat buffer only when
    /// asked: the decode step does not need the copies).
    public var pageScores: [[Float]] {
        let pages = pageProbabilities.count
        return temperatures.indices.map { Array(pageScoreRows[($0 * pages)..<(($0 + 1) * pages)]) }
    }
    /// `ŝ` as computed, `[head][page]`.
    var pageScoreRows: [Float]
    /// `τ_h` per query head.
    public var temperatures: [Float]
    /// `ω` per page: the group-mean per-token probability of each page's tokens.
    public var pageProbabilities: [Float]
    /// The best pages by descending `ω` (then lower page first): as many as `k2` tokens can need.
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
        let dims = KVSelect.rankedTop(a, min(max(1, k1), d))
        let positive = dims.map { sum[$0] > 0 }
        // Steps 3–5: page logits per head from the sign-selected strips, and temperatures.
        // scores[h][p] accumulates over the dims in rank order; each strip is read once for the whole group,
        // and the f16 kernel keeps a block of pages' sums in registers across all strips.
        var flat = [Float](repeating: 0, count: G * pages)
        switch metadata.precision {
        case .f32:
            for (i, dim) in dims.enumerated() {
                let strip = metadata.strip(dim: dim, max: positive[i])
                for h in 0..<G {
                    let qi = queries[h * d + dim]
                    for p in 0..<pages { flat[h * pages + p] += qi * strip[p] }
                }
            }
        case .f16:
            let strips = dims.indices.map { Optional(metadata.halfStrip(dim: dims[$0], max: positive[$0])) }
            var coefficients = [Float](repeating: 0, count: dims.count * G)   // [strip][head]
            for (i, dim) in dims.enumerated() { for h in 0..<G { coefficients[i * G + h] = queries[h * d + dim] } }
            rk_strip_scores_f16(strips, Int32(dims.count), coefficients, Int32(G), &flat, pages, Int32(pages))
        }
        var temperatures = [Float](repeating: 1, count: G)
        for h in 0..<G {
            let q = queries + h * d
            var selected: Float = 0, total: Float = 0
            for dim in dims { selected += abs(q[dim]) }
            for i in 0..<d { total += abs(q[i]) }
            temperatures[h] = total > 0 ? (Float(d) * selected / total).squareRoot() : Float(d).squareRoot()
        }
        // Steps 6–8: per-token softmax per head done per page, then the group mean.
        var omega = [Float](repeating: 0, count: pages), e = omega
        flat.withUnsafeBufferPointer { scores in
            for h in 0..<G {
                let row = scores.baseAddress! + h * pages, inv = 1 / temperatures[h]
                var m = -Float.infinity
                for p in 0..<pages { m = max(m, row[p] * inv) }
                for p in 0..<pages { e[p] = expf(row[p] * inv - m) }
                var z: Double = 0   // summed apart from the expf calls, which would spill it on every page
                for p in 0..<pages { z += Double(metadata.tokens(inPage: p)) * Double(e[p]) }
                let scale = Float(1 / (z * Double(G)))
                for p in 0..<pages { omega[p] += e[p] * scale }
            }
        }
        // Step 9: top-k2 tokens = whole pages by score, lowest slots of a partial page. Only the best
        // ⌈k2/P⌉ + 1 pages can be needed (one more in case the last, partial page is among them).
        let want = min(k2, N)
        let order = KVSelect.rankedTop(omega, min(pages, (want + metadata.pageSize - 1) / metadata.pageSize + 1))
        var slots: [Int32] = []
        slots.reserveCapacity(want)
        for p in order where slots.count < want {
            let first = p * metadata.pageSize
            let take = min(metadata.tokens(inPage: p), want - slots.count)
            for s in first..<(first + take) { slots.append(Int32(s)) }
        }
        return HSASelection(slots: slots, dims: dims, positive: positive, pageScoreRows: flat, temperatures: temperatures,
                            pageProbabilities: omega, pageOrder: order)
    }

    /// Exact attention of the group's query heads over the selected slots of `stream` (§4.3 step 10), in
    /// llama.cpp's decode arithmetic (`Attention.sparseGroup`).
    public static func attend(queries: UnsafePointer<Float>, groupSize G: Int, stream: KVStream, slots: [Int32],
                              scale: Float, output: UnsafeMutablePointer<Float>) {
        // The single-token summation order needs rows of a multiple of 32 values; use the batched one otherwise.
        let batched = stream.headDim % 32 != 0
        slots.withUnsafeBufferPointer { s in
            Attention.sparseGroup(queries: queries, heads: G, stream: stream, slots: s, scale: scale, output: output, batched: batched)
        }
    }

    /// Bytes HSA reads for one group in one step (§7.2): `k1·n_pg` metadata values plus `2d` f16 values per
    /// attended slot.
    public static func bytesRead(k1: Int, pages: Int, metadataBytes: Int = 2, attended: Int, headDim d: Int) -> Int {
        k1 * pages * metadataBytes + attended * 2 * d * 2
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
                bytesOut[g] = HSA.bytesRead(k1: selection.dims.count, pages: metadata[g].pages, metadataBytes: metadata[g].elementBytes,
                                            attended: selection.slots.count, headDim: d)
            }
        }
    }
    return bytes.reduce(0, +)
}
