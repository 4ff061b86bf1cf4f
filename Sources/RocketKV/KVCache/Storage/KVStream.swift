#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels

/// One sequence of cached keys and values (typically one layer and one KV head): f16 rows in slot order,
/// each with the absolute position of its token. Keys are stored after RoPE.
///
/// Slots are physical; positions are logical. Eviction (`retain`) compacts the slots and gives the freed
/// memory back, so a method that keeps fewer tokens really holds less memory.
// @unchecked: unsynchronized. Used by the thread that runs its sequence, and inside that thread's pool jobs,
// whose tasks read streams and mutate only a stream no other task of the job touches.
public final class KVStream: @unchecked Sendable {
    public let headDim: Int
    public private(set) var count = 0
    public private(set) var capacity = 0
    public private(set) var keys: UnsafeMutablePointer<UInt16>
    public private(set) var values: UnsafeMutablePointer<UInt16>
    public private(set) var positions: UnsafeMutablePointer<Int32>

    public init(headDim: Int, capacity: Int = 0) {
        self.headDim = headDim
        keys = UnsafeMutablePointer(bitPattern: 8)!   // placeholder, replaced by the first resize
        values = keys
        positions = UnsafeMutablePointer(bitPattern: 8)!
        resize(to: capacity)
    }

    deinit {
        if capacity > 0 { free(keys); free(values); free(positions) }
    }

    /// Bytes of memory held (keys, values and positions, including spare capacity).
    public var allocatedBytes: Int { capacity * (2 * headDim * 2 + 4) }

    /// Makes room for at least `slots` slots in all.
    public func reserve(_ slots: Int) {
        if slots > capacity { resize(to: slots) }
    }

    /// Appends a key/value pair (f32, converted to f16) for the token at `position`.
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int) {
        if count == capacity { resize(to: max(64, capacity * 2)) }
        rk_f32_to_f16(key, keys + count * headDim, Int32(headDim))
        rk_f32_to_f16(value, values + count * headDim, Int32(headDim))
        positions[count] = Int32(position)
        count += 1
    }

    /// Keeps only the given slots, in the given order, and releases the memory of the others.
    public func retain(slots: [Int]) {
        guard !slots.isEmpty else { removeAll(); return }
        let d = headDim, rowBytes = d * MemoryLayout<UInt16>.size
        let (newKeys, newValues, newPositions) = allocateRows(slots.count)
        for (i, s) in slots.enumerated() {
            precondition(s >= 0 && s < count, "retain: slot \(s) out of range 0..<\(count)")
            memcpy(newKeys + i * d, keys + s * d, rowBytes)
            memcpy(newValues + i * d, values + s * d, rowBytes)
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
        let d = headDim, later = count - range.upperBound
        memmove(keys + range.lowerBound * d, keys + range.upperBound * d, later * d * 2)
        memmove(values + range.lowerBound * d, values + range.upperBound * d, later * d * 2)
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
            keys = UnsafeMutablePointer(bitPattern: 8)!
            values = keys
            positions = UnsafeMutablePointer(bitPattern: 8)!
            capacity = 0
            return
        }
        let rowBytes = headDim * MemoryLayout<UInt16>.size
        if capacity == 0 {
            (keys, values, positions) = allocateRows(newCapacity)
        } else {
            keys = realloc(keys, newCapacity * rowBytes)!.assumingMemoryBound(to: UInt16.self)
            values = realloc(values, newCapacity * rowBytes)!.assumingMemoryBound(to: UInt16.self)
            positions = realloc(positions, newCapacity * 4)!.assumingMemoryBound(to: Int32.self)
        }
        capacity = newCapacity
    }

    /// Fresh key, value and position buffers for `slots` slots (`malloc`, as `resize` reallocates and `deinit`
    /// frees them).
    private func allocateRows(_ slots: Int) -> (UnsafeMutablePointer<UInt16>, UnsafeMutablePointer<UInt16>, UnsafeMutablePointer<Int32>) {
        let rowBytes = headDim * MemoryLayout<UInt16>.size
        return (malloc(slots * rowBytes)!.assumingMemoryBound(to: UInt16.self),
                malloc(slots * rowBytes)!.assumingMemoryBound(to: UInt16.self),
                malloc(slots * 4)!.assumingMemoryBound(to: Int32.self))
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

    /// Appends rows `slots` of `source` (f16 → f32 → f16 is exact).
    func copyRows(of source: KVStream, slots: [Int]) {
        let d = headDim
        reserve(count + slots.count)
        var k = [Float](repeating: 0, count: d), v = k
        for s in slots {
            rk_f16_to_f32(source.keys + s * d, &k, Int32(d))
            rk_f16_to_f32(source.values + s * d, &v, Int32(d))
            append(key: k, value: v, position: Int(source.positions[s]))
        }
    }
}
