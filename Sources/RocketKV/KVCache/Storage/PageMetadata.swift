import Foundation
import CKernels

/// Per-page element-wise key minimum and maximum of one KV group (ROCKETKV.md §4.1), over cache slots
/// `0 ..< tokens` split into pages of `pageSize` slots: the one dimension-major key store, serving HSA's page
/// scores, Quest's upper bounds and (pages of one slot) SparQ's transposed key copy.
///
/// Layout is dimension-major, `[2d][pageCapacity]`: row `i` holds `Kmin` of dimension `i` for every page and
/// row `d + i` its `Kmax`, so HSA reads `k1` contiguous strips. With `pageSize` 1, min = max = the key, so only
/// the `d` rows of a transposed key copy are stored (as [E] does).
///
/// Precision: the bounds are always taken over the keys as the cache stores them (for a quantized cache, the
/// dequantized rows, which are what attention multiplies), so a page's bounds hold for every key it covers.
/// - `.f16` (2 bytes per value; f16 caches, Quest, SparQ): the minimum or maximum of f16 values is one of them, so
///   f16 metadata over an f16 cache is exact; a value that is not an f16 value is rounded outward (minimum down,
///   maximum up) to the next f16, so the bounds stay true bounds.
/// - `.q8` (1 byte per value; HSA over a Q8_0/Q4_0 cache): each row (one dimension's minima, or its maxima) is
///   int8 times one f32 scale of its own. A minimum is rounded down and a maximum up to a multiple of the scale,
///   so they stay true bounds, widened by less than one step. When a key does not fit a row's range, the row's
///   scale doubles (as often as needed) and its stored values are halved, rounding outward again, so they stay
///   bounds (widened by less than two steps of the final scale in all). A fresh `extend(covering:)` first sizes
///   each row's scale from all the keys it adds. The page scores of HSA read half the bytes of `.f16`.
/// - `.f32` (4 bytes) is for keys that are not f16 values (the F32 conformance vector of §4.5).
///
/// Pages of one slot (a transposed key copy) store the nearest value instead of rounding outward.
// @unchecked: unsynchronized, used as `KVStream` is: pool tasks mutate only metadata no other task of the job touches.
public final class PageMetadata: @unchecked Sendable {
    public enum Precision: Sendable { case f16, f32, q8 }

    public let headDim: Int
    public let pageSize: Int
    public let precision: Precision
    /// Slots covered.
    public private(set) var tokens = 0
    public private(set) var pageCapacity = 0
    private var storage: UnsafeMutableRawPointer?
    /// `.q8`: the scale of each row (0 until the row holds a nonzero value).
    private var rowScales: [Float]
    private var scratch: [Float]

    public init(headDim: Int, pageSize: Int, precision: Precision = .f32) {
        precondition(pageSize >= 1)
        self.headDim = headDim
        self.pageSize = pageSize
        self.precision = precision
        scratch = [Float](repeating: 0, count: headDim)
        rowScales = [Float](repeating: 0, count: precision == .q8 ? (pageSize == 1 ? headDim : 2 * headDim) : 0)
    }

    deinit { storage?.deallocate() }

    public var pages: Int { (tokens + pageSize - 1) / pageSize }
    /// Bytes per stored value.
    public var elementBytes: Int {
        switch precision {
        case .f16: return 2
        case .f32: return 4
        case .q8: return 1
        }
    }
    /// Stored rows: `2d` (min and max), or `d` for pages of one slot.
    public var rows: Int { pageSize == 1 ? headDim : 2 * headDim }
    public var allocatedBytes: Int { rows * pageCapacity * elementBytes + rowScales.count * MemoryLayout<Float>.size }
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

    /// The same strip as int8 values (`.q8` storage), and the scale that multiplies them.
    public func byteStrip(dim: Int, max: Bool) -> (values: UnsafePointer<Int8>, scale: Float) {
        precondition(precision == .q8)
        let r = row(dim: dim, max: max)
        return (UnsafePointer(storage!.assumingMemoryBound(to: Int8.self) + r * pageCapacity), rowScales[r])
    }

    private func value(row r: Int, page: Int) -> Float {
        switch precision {
        case .q8: return Float(storage!.assumingMemoryBound(to: Int8.self)[r * pageCapacity + page]) * rowScales[r]
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
    /// bounds widen element-wise. With `.f16` storage a key that is not an f16 value widens the minimum to the
    /// f16 below it and the maximum to the f16 above it (true bounds; exact for f16 keys).
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
                // Pages of one slot are a transposed key copy (one row for min and max): the nearest f16.
                if pageSize == 1 { base[lo] = Float16(key[i]).bitPattern; continue }
                if opens || key[i] < Float(Float16(bitPattern: base[lo])) { base[lo] = PageMetadata.halfBelow(key[i]).bitPattern }
                if opens || key[i] > Float(Float16(bitPattern: base[hi])) { base[hi] = PageMetadata.halfAbove(key[i]).bitPattern }
            }
        case .q8:
            let base = storage!.assumingMemoryBound(to: Int8.self) + p, maximum = pageSize > 1 ? base + d * cap : nil
            if addQ8(base, maximum, key: key, opens: opens) != 0 {
                for i in 0..<d {
                    for r in pageSize > 1 ? [i, d + i] : [i] { fitQ8(magnitude: PageMetadata.magnitude(key[i]), row: r) }
                }
                let fits = addQ8(base, maximum, key: key, opens: opens)
                precondition(fits == 0)
            }
        }
        tokens += 1
    }

    private func addQ8(_ minimum: UnsafeMutablePointer<Int8>, _ maximum: UnsafeMutablePointer<Int8>?, key: UnsafePointer<Float>, opens: Bool) -> Int32 {
        rowScales.withUnsafeBufferPointer {
            rk_page_bounds_add_q8(minimum, maximum, pageCapacity, $0.baseAddress!, key, Int32(headDim), opens ? 1 : 0)
        }
    }

    /// |x| as int8 bounds see it (`rk_page_bound_value`: NaN as 0, infinities as the largest finite value).
    private static func magnitude(_ x: Float) -> Float { abs(rk_page_bound_value(x)) }

    /// Makes row `r`'s range (±127 steps) hold `magnitude`: a first nonzero value sets the scale, later ones
    /// double it, re-rounding the row's stored pages outward (pages of one slot: to nearest).
    private func fitQ8(magnitude: Float, row r: Int) {
        var scale = rowScales[r]
        if scale == 0 {
            guard magnitude > 0 else { return }
            scale = (magnitude / 127).nextUp
            while 127 * scale < magnitude { scale = scale.nextUp }
            rowScales[r] = scale
            return
        }
        var shift = 0
        while 127 * scale < magnitude { scale *= 2; shift += 1 }
        guard shift > 0 else { return }
        rowScales[r] = scale
        let values = storage!.assumingMemoryBound(to: Int8.self) + r * pageCapacity, isMax = r >= headDim && pageSize > 1
        for p in 0..<pages {
            let q = Int(values[p])
            values[p] = Int8(pageSize == 1 ? (q + (1 << (shift - 1))) >> shift : isMax ? -((-q) >> shift) : q >> shift)
        }
    }

    /// The largest f16 value not above `x`.
    static func halfBelow(_ x: Float) -> Float16 {
        let h = Float16(x)
        return Float(h) > x ? h.nextDown : h
    }

    /// The smallest f16 value not below `x`.
    static func halfAbove(_ x: Float) -> Float16 {
        let h = Float16(x)
        return Float(h) < x ? h.nextUp : h
    }

    /// Appends the key of slot `slot` of `stream` as stored: f16 keys directly, quantized ones dequantized.
    public func append(slot: Int, of stream: KVStream) {
        if stream.kvType == .f16 { append(halfKey: stream.halfKeys + slot * headDim); return }
        scratch.withUnsafeMutableBufferPointer { b in
            stream.key(slot, into: b.baseAddress!)
            append(key: UnsafePointer(b.baseAddress!))
        }
    }

    /// Appends an f16 key (as stored in an f16 `KVStream`).
    public func append(halfKey: UnsafePointer<UInt16>) {
        guard precision == .f16 else {
            scratch.withUnsafeMutableBufferPointer { b in
                rk_f16_to_f32(halfKey, b.baseAddress!, Int32(headDim))
                append(key: UnsafePointer(b.baseAddress!))
            }
            return
        }
        if tokens + 1 > pageCapacity * pageSize { reserve(tokens: tokens + 1) }
        let p = tokens / pageSize, base = storage!.assumingMemoryBound(to: UInt16.self) + p
        rk_page_bounds_add_f16(base, pageSize > 1 ? base + headDim * pageCapacity : nil, pageCapacity, halfKey,
                               Int32(headDim), tokens % pageSize == 0 ? 1 : 0)
        tokens += 1
    }

    /// Appends the rows of `stream` not covered yet (slots `tokens ..< stream.count`): the metadata of a stream
    /// that only grows. `.q8` rows still without a scale get one sized for all the keys added.
    public func extend(covering stream: KVStream) {
        if precision == .q8, stream.count - tokens > 1 {
            var magnitude = [Float](repeating: 0, count: headDim)
            scratch.withUnsafeMutableBufferPointer { b in
                for slot in tokens..<stream.count {
                    stream.key(slot, into: b.baseAddress!)
                    for i in 0..<headDim { magnitude[i] = Swift.max(magnitude[i], PageMetadata.magnitude(b[i])) }
                }
            }
            reserve(tokens: stream.count)
            for r in rowScales.indices where rowScales[r] == 0 { fitQ8(magnitude: magnitude[r % headDim], row: r) }
        }
        while tokens < stream.count { append(slot: tokens, of: stream) }
    }

    /// Forgets every page (keeps the allocation).
    public func removeAll() { tokens = 0 }

    /// Frees the allocation.
    public func release() {
        storage?.deallocate()
        storage = nil
        for r in rowScales.indices { rowScales[r] = 0 }
        tokens = 0
        pageCapacity = 0
    }
}
