import RocketKV

/// Little-endian byte sink with the GGUF primitives.
public struct GGUFBytes {
    public init() {}
    public var bytes: [UInt8] = []
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes += Array(s.utf8) }
    public mutating func pad(to alignment: Int) { while bytes.count % alignment != 0 { bytes.append(0) } }

    /// GGUF value type id of a value.
    public static func typeID(of value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    /// Writes a value's payload (no type id). Arrays take their element type from the first element
    /// (uint8 when empty).
    public mutating func payload(_ value: GGUFValue) {
        switch value {
        case .uint8(let v): u8(v)
        case .int8(let v): u8(UInt8(bitPattern: v))
        case .uint16(let v): u16(v)
        case .int16(let v): u16(UInt16(bitPattern: v))
        case .uint32(let v): u32(v)
        case .int32(let v): u32(UInt32(bitPattern: v))
        case .float32(let v): u32(v.bitPattern)
        case .bool(let v): u8(v ? 1 : 0)
        case .string(let s): string(s)
        case .uint64(let v): u64(v)
        case .int64(let v): u64(UInt64(bitPattern: v))
        case .float64(let v): u64(v.bitPattern)
        case .array(let elements):
            u32(elements.first.map(Self.typeID) ?? 0)
            u64(UInt64(elements.count))
            for e in elements { payload(e) }
        }
    }

    public mutating func keyValue(_ key: String, _ value: GGUFValue) {
        string(key)
        u32(Self.typeID(of: value))
        payload(value)
    }
}

/// Builds GGUF images in memory: header, metadata, tensor descriptors, padding and tensor data.
public struct TestGGUFWriter {
    public init() {}
    public struct Tensor {
        public var name: String
        public var shape: [Int]
        public var type: GGMLType
        public var data: [UInt8]
    }

    public var magic: UInt32 = 0x4655_4747  // "GGUF"
    public var version: UInt32 = 3
    public var metadata: [(String, GGUFValue)] = []
    public var tensors: [Tensor] = []
    /// Alignment used for padding (write `general.alignment` in `metadata` to change the reader's).
    public var alignment = 32

    public mutating func add(_ key: String, _ value: GGUFValue) { metadata.append((key, value)) }
    public mutating func addTensor(_ name: String, shape: [Int], type: GGMLType, data: [UInt8]) {
        tensors.append(Tensor(name: name, shape: shape, type: type, data: data))
    }

    /// Offsets of each tensor's data from the data section, as written.
    public var tensorOffsets: [Int] {
        var offsets: [Int] = []
        var position = 0
        for t in tensors {
            offsets.append(position)
            position += t.data.count
            position = (position + alignment - 1) / alignment * alignment
        }
        return offsets
    }

    /// The header: magic, version, counts and metadata (what precedes the tensor descriptors).
    public func header(tensorCount: UInt64? = nil, kvCount: UInt64? = nil) -> GGUFBytes {
        var out = GGUFBytes()
        out.u32(magic)
        out.u32(version)
        out.u64(tensorCount ?? UInt64(tensors.count))
        out.u64(kvCount ?? UInt64(metadata.count))
        for (key, value) in metadata { out.keyValue(key, value) }
        return out
    }

    public func build() -> [UInt8] {
        var out = header()
        for (t, offset) in zip(tensors, tensorOffsets) {
            out.string(t.name)
            out.u32(UInt32(t.shape.count))
            for d in t.shape { out.u64(UInt64(d)) }
            out.u32(t.type.rawValue)
            out.u64(UInt64(offset))
        }
        out.pad(to: alignment)
        let dataStart = out.bytes.count
        for (t, offset) in zip(tensors, tensorOffsets) {
            out.bytes += [UInt8](repeating: 0, count: dataStart + offset - out.bytes.count)
            out.bytes += t.data
        }
        return out.bytes
    }
}


extension TestGGUFWriter {
    /// A writer holding a copy of `file`: its metadata in file order and every tensor with its data, so a test
    /// can change one thing of a real model and write it back.
    public init(copying file: GGUFFile) {
        self.init()
        version = UInt32(file.version)
        alignment = file.alignment
        metadata = file.metadataKeys.compactMap { key in file.metadata[key].map { (key, $0) } }
        tensors = file.tensors.map { t in
            Tensor(name: t.name, shape: t.shape, type: t.type,
                   data: Array(UnsafeRawBufferPointer(start: file.data(of: t), count: t.byteCount)))
        }
    }

    /// Replaces the value of `key` (appending it when absent); `nil` removes the key.
    public mutating func set(_ key: String, _ value: GGUFValue?) {
        let index = metadata.firstIndex { $0.0 == key }
        switch (index, value) {
        case (let i?, let v?): metadata[i].1 = v
        case (let i?, nil): metadata.remove(at: i)
        case (nil, let v?): metadata.append((key, v))
        case (nil, nil): break
        }
    }

    /// Removes the tensors whose names satisfy `predicate`.
    public mutating func removeTensors(where predicate: (String) -> Bool) {
        tensors.removeAll { predicate($0.name) }
    }
}
