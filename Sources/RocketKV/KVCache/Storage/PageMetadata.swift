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
/// Precision: the policies use `.f16`. The bounds are always taken over the keys as the cache stores them (for a
/// quantized cache, the dequantized rows, which are what attention multiplies), so a page's bounds hold for
/// every key it covers. For an f16 cache the minimum or maximum of f16 values is one of them, so f16 metadata
/// is exact at 2 bytes per value; a dequantized Q8_0/Q4_0 value need not be an f16 value, and is rounded
/// outward (minimum down, maximum up) to the next f16, so the bounds stay true bounds, widened by at most one
/// f16 step (pages of one slot, a transposed key copy, hold the nearest f16 instead). `.f32` (4 bytes) is for keys that are not f16 values (the F32 conformance vector of §4.5).
// @unchecked: unsynchronized, used as `KVStream` is: pool tasks mutate only metadata no other task of the job touches.
public final class PageMetadata: @unchecked Sendable {
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
        }
        tokens += 1
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
        if stream.rowType == .f16 { append(halfKey: stream.halfKeys + slot * headDim); return }
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
    /// that only grows.
    public func extend(covering stream: KVStream) {
        while tokens < stream.count { append(slot: tokens, of: stream) }
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
