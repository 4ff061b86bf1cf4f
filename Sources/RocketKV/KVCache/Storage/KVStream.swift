#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels

/// One sequence of cached keys and values (typically one layer and one KV head): key and value rows of `kvType`
/// (f16, or ggml Q8_0/Q4_0 blocks, the two halves' types possibly different) in slot order, each with the absolute position of its token. Keys are stored after RoPE.
///
/// Slots are physical; positions are logical. Eviction (`retain`) compacts the slots and gives the freed
/// memory back, so a method that keeps fewer tokens really holds less memory.
// @unchecked: unsynchronized. Used by the thread that runs its sequence, and inside that thread's pool jobs,
// whose tasks read streams and mutate only a stream no other task of the job touches.
public final class KVStream: @unchecked Sendable {
    public let headDim: Int
    public let kvType: KVCacheType
    /// Bytes of one key row and of one value row.
    public let keyBytes: Int, valueBytes: Int
    public private(set) var count = 0
    public private(set) var capacity = 0
    /// Key rows, slot `s` at byte `s · keyBytes`.
    public private(set) var keys: UnsafeMutableRawPointer
    /// Value rows, slot `s` at byte `s · valueBytes`.
    public private(set) var values: UnsafeMutableRawPointer
    public private(set) var positions: UnsafeMutablePointer<Int32>

    /// `kvType` must fit `headDim` (`KVCacheType.check`).
    public init(headDim: Int, kvType: KVCacheType = .f16, capacity: Int = 0) {
        precondition((try? kvType.check(headDim: headDim)) != nil, "\(kvType) rows need a head dimension that is a multiple of 32")
        self.headDim = headDim
        self.kvType = kvType
        keyBytes = kvType.key.rowBytes(headDim: headDim)
        valueBytes = kvType.value.rowBytes(headDim: headDim)
        keys = UnsafeMutableRawPointer(bitPattern: 8)!   // placeholder, replaced by the first resize
        values = keys
        positions = UnsafeMutablePointer(bitPattern: 8)!
        resize(to: capacity)
    }

    deinit {
        if capacity > 0 { free(keys); free(values); free(positions) }
    }

    /// Bytes of memory held (keys, values and positions, including spare capacity).
    public var allocatedBytes: Int { capacity * (keyBytes + valueBytes + 4) }

    /// The key row of slot `slot`.
    public func keyRow(_ slot: Int) -> UnsafeRawPointer { UnsafeRawPointer(keys + slot * keyBytes) }
    /// The value row of slot `slot`.
    public func valueRow(_ slot: Int) -> UnsafeRawPointer { UnsafeRawPointer(values + slot * valueBytes) }

    /// The keys as f16 bit patterns, slot `s` at `s · headDim` (f16 streams only).
    public var halfKeys: UnsafeMutablePointer<UInt16> {
        precondition(kvType == .f16, "halfKeys of a \(kvType) stream")
        return keys.assumingMemoryBound(to: UInt16.self)
    }

    /// The values as f16 bit patterns (f16 streams only).
    public var halfValues: UnsafeMutablePointer<UInt16> {
        precondition(kvType == .f16, "halfValues of a \(kvType) stream")
        return values.assumingMemoryBound(to: UInt16.self)
    }

    /// The key of slot `slot` as stored (dequantized: exact, every stored value is a float) into `headDim` floats.
    public func key(_ slot: Int, into destination: UnsafeMutablePointer<Float>) {
        rk_kv_dequantize_row(kvType.key.kernelType, keyRow(slot), destination, Int32(headDim))
    }

    /// The value of slot `slot` as stored, into `headDim` floats.
    public func value(_ slot: Int, into destination: UnsafeMutablePointer<Float>) {
        rk_kv_dequantize_row(kvType.value.kernelType, valueRow(slot), destination, Int32(headDim))
    }

    /// Makes room for at least `slots` slots in all.
    public func reserve(_ slots: Int) {
        if slots > capacity { resize(to: slots) }
    }

    /// Appends a key/value pair (f32, converted to the row types) for the token at `position`.
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int) {
        if count == capacity { resize(to: max(64, capacity * 2)) }
        rk_kv_quantize_row(kvType.key.kernelType, key, keys + count * keyBytes, Int32(headDim))
        rk_kv_quantize_row(kvType.value.kernelType, value, values + count * valueBytes, Int32(headDim))
        positions[count] = Int32(position)
        count += 1
    }

    /// Keeps only the given slots, in the given order, and releases the memory of the others.
    public func retain(slots: [Int]) {
        guard !slots.isEmpty else { removeAll(); return }
        let (newKeys, newValues, newPositions) = allocateRows(slots.count)
        for (i, s) in slots.enumerated() {
            precondition(s >= 0 && s < count, "retain: slot \(s) out of range 0..<\(count)")
            memcpy(newKeys + i * keyBytes, keys + s * keyBytes, keyBytes)
            memcpy(newValues + i * valueBytes, values + s * valueBytes, valueBytes)
            newPositions[i] = positions[s]
        }
        free(keys); free(values); free(positions)
        (keys, values, positions) = (newKeys, newValues, newPositions)
        capacity = slots.count
        count = slots.count
    }

    /// Removes a run of slots, moving the later ones down (order kept). The capacity stays, for the next
    /// append: the per-step eviction of a fixed-size cache, without reallocating.
    public func remove(slots range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "remove: slots \(range) out of range 0..<\(count)")
        let k = keyBytes, v = valueBytes, later = count - range.upperBound
        memmove(keys + range.lowerBound * k, keys + range.upperBound * k, later * k)
        memmove(values + range.lowerBound * v, values + range.upperBound * v, later * v)
        memmove(positions + range.lowerBound, positions + range.upperBound, later * 4)
        count -= range.count
    }

    /// Removes every slot and frees the memory.
    public func removeAll() {
        count = 0
        resize(to: 0)
    }

    private func resize(to newCapacity: Int) {
        precondition(newCapacity >= count)
        if newCapacity == 0 {
            if capacity > 0 { free(keys); free(values); free(positions) }
            keys = UnsafeMutableRawPointer(bitPattern: 8)!
            values = keys
            positions = UnsafeMutablePointer(bitPattern: 8)!
            capacity = 0
            return
        }
        if capacity == 0 {
            (keys, values, positions) = allocateRows(newCapacity)
        } else {
            keys = realloc(keys, newCapacity * keyBytes)!
            values = realloc(values, newCapacity * valueBytes)!
            positions = realloc(positions, newCapacity * 4)!.assumingMemoryBound(to: Int32.self)
        }
        capacity = newCapacity
    }

    /// Fresh key, value and position buffers for `slots` slots (`malloc`, as `resize` reallocates and `deinit`
    /// frees them).
    private func allocateRows(_ slots: Int) -> (UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) {
        (malloc(slots * keyBytes)!, malloc(slots * valueBytes)!, malloc(slots * 4)!.assumingMemoryBound(to: Int32.self))
    }
}

extension KVStream {
    /// Appends the chunk's rows of KV head `head`.
    func append(_ input: AttentionInput, head: Int, kvHeads: Int) {
        let d = headDim
        for t in 0..<input.tokens {
            let offset = (t * kvHeads + head) * d
            append(key: input.keys + offset, value: input.values + offset, position: input.firstPosition + t)
        }
    }

    /// Appends rows `slots` of `source` (a stream of the same types), bytes as they are.
    func copyRows(of source: KVStream, slots: [Int]) {
        precondition(source.kvType == kvType && source.headDim == headDim)
        reserve(count + slots.count)
        for s in slots {
            memcpy(keys + count * keyBytes, source.keyRow(s), keyBytes)
            memcpy(values + count * valueBytes, source.valueRow(s), valueBytes)
            positions[count] = source.positions[s]
            count += 1
        }
    }
}
