#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A metadata value of a GGUF file. Not `indirect`: array elements are stored inline (16 bytes each), so a
/// metadata array costs at most ~16× its encoded size in memory.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as an integer, if it is one of the integer types.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value as a floating-point number (integers are converted).
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [GGUFValue]? { if case .array(let a) = self { return a } else { return nil } }
}

/// Describes one tensor stored in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions in GGML order: `shape[0]` is the contiguous (row) length.
    public let shape: [Int]
    public let type: GGMLType
    /// Offset of the tensor's data from the start of the data section.
    public let offset: Int
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { type.byteCount(elements: elementCount) }
}

/// Error raised for files that are not valid GGUF, or lack what the engine needs.
public struct GGUFError: Error, CustomStringConvertible, Equatable {
    /// Whether the file could not be opened at all, or its contents are wrong.
    public enum Kind: Sendable { case invalidData, cannotOpen }
    public let description: String
    public let kind: Kind
    public init(_ description: String, kind: Kind = .invalidData) {
        self.description = description
        self.kind = kind
    }
}

/// A memory-mapped GGUF file (versions 2 and 3): metadata, tensor descriptors and raw tensor data.
///
/// Tensor data stays in the mapping in its stored (quantized) format; nothing is copied.
// @unchecked: every property is a `let`; `base` is a read-only mapping, unmapped only when the file is released.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order (for display).
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Byte offset of the data section from the start of the file.
    public let dataOffset: Int
    public let fileSize: Int
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let tensorIndex: [String: Int]

    /// Opens and validates the file at `path`.
    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError("cannot open model file '\(path)': \(String(cString: strerror(errno)))", kind: .cannotOpen) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw GGUFError("cannot stat '\(path)'", kind: .cannotOpen) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw GGUFError("'\(path)' is not a regular file", kind: .cannotOpen) }
        let size = Int(info.st_size)
        guard size >= 24 else { throw GGUFError("'\(path)' is too small to be a GGUF file (\(size) bytes)") }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw GGUFError("cannot memory-map '\(path)'")
        }
        do {
            try self.init(path: path, base: UnsafeRawPointer(mapping), size: size, mappedLength: size)
        } catch {
            munmap(mapping, size)
            // Name the file in every message about its contents.
            guard let invalid = error as? GGUFError, !invalid.description.contains(path) else { throw error }
            throw GGUFError("\(path): \(invalid.description)")
        }
    }

    /// Parses a GGUF image held in memory (copied into an owned buffer). Used by tests.
    public convenience init(bytes: [UInt8]) throws {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { source in
            if let start = source.baseAddress, !source.isEmpty { buffer.copyMemory(from: start, byteCount: source.count) }
        }
        do {
            try self.init(path: "<memory>", base: UnsafeRawPointer(buffer), size: bytes.count, mappedLength: -1)
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    private init(path: String, base: UnsafeRawPointer, size: Int, mappedLength: Int) throws {
        var reader = ByteReader(base: base, size: size)
        guard size >= 4, base.loadUnaligned(as: UInt32.self) == 0x4655_4747 else {
            throw GGUFError("'\(path)' is not a GGUF file (bad magic)")
        }
        reader.position = 4
        let version = Int(try reader.read(UInt32.self))
        guard version == 2 || version == 3 else { throw GGUFError("unsupported GGUF version \(version) (2 and 3 are supported)") }
        let tensorCount = try reader.readCount("tensor count", limit: size / 24)
        let kvCount = try reader.readCount("metadata count", limit: size / 12)

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for _ in 0..<kvCount {
            let key = try reader.readString()
            // Like llama.cpp, refuse duplicates rather than let one value silently shadow another.
            guard metadata[key] == nil else { throw GGUFError("duplicate metadata key '\(key)'") }
            let typeID = try reader.read(UInt32.self)
            metadata[key] = try reader.readValue(typeID: typeID, depth: 0)
            keys.append(key)
        }
        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue, a > 0, a & (a - 1) == 0 else {
                throw GGUFError("general.alignment must be a power of two")
            }
            alignment = a
        }

        var tensors: [GGUFTensorInfo] = []
        // The count is only bounded by the file size: do not let a corrupt one reserve gigabytes.
        tensors.reserveCapacity(min(tensorCount, 4096))
        var index: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try reader.readString()
            let nDims = Int(try reader.read(UInt32.self))
            guard (1...4).contains(nDims) else { throw GGUFError("tensor '\(name)' has \(nDims) dimensions (1...4 allowed)") }
            var shape: [Int] = []
            for _ in 0..<nDims {
                let dim = try reader.read(UInt64.self)
                guard dim > 0, dim < 1 << 40 else { throw GGUFError("tensor '\(name)' has an invalid dimension \(dim)") }
                shape.append(Int(dim))
            }
            let rawType = try reader.read(UInt32.self)
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError("tensor '\(name)' has unsupported tensor type \(rawType)")
            }
            let offset = try reader.read(UInt64.self)
            guard offset < UInt64(size) else { throw GGUFError("tensor '\(name)' data offset \(offset) is beyond the file") }
            guard shape[0] % type.blockSize == 0 else {
                throw GGUFError("tensor '\(name)' row length \(shape[0]) is not a multiple of the \(type.name) block size")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (m, o) = acc.0.multipliedReportingOverflow(by: d); return (m, acc.1 || o)
            }
            guard !overflow, elements < 1 << 40 else { throw GGUFError("tensor '\(name)' is absurdly large") }
            guard index[name] == nil else { throw GGUFError("duplicate tensor name '\(name)'") }
            index[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, shape: shape, type: type, offset: Int(offset)))
        }
        let dataOffset = (reader.position + alignment - 1) / alignment * alignment
        for t in tensors {
            guard t.offset % alignment == 0 else { throw GGUFError("tensor '\(t.name)' data is not aligned to \(alignment) bytes") }
            let end = dataOffset + t.offset + t.byteCount
            guard end <= size else {
                throw GGUFError("tensor '\(t.name)' data lies outside the file (needs \(end) bytes, file has \(size)); the file is truncated or corrupt")
            }
        }

        self.path = path
        self.version = version
        self.metadata = metadata
        self.metadataKeys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.fileSize = size
        self.base = base
        self.mappedLength = mappedLength
        self.tensorIndex = index
    }

    deinit {
        if mappedLength > 0 {
            munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// The descriptor of the tensor called `name`, if present.
    public func tensor(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// Pointer to the first byte of a tensor's data (valid for the file's lifetime).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawPointer { base + dataOffset + tensor.offset }

    // MARK: Typed metadata access with clear errors

    public func string(_ key: String) throws -> String {
        guard let v = metadata[key] else { throw GGUFError("missing metadata key '\(key)'") }
        guard let s = v.stringValue else { throw GGUFError("metadata key '\(key)' is not a string") }
        return s
    }

    public func int(_ key: String) throws -> Int {
        guard let v = metadata[key] else { throw GGUFError("missing metadata key '\(key)'") }
        guard let i = v.intValue else { throw GGUFError("metadata key '\(key)' is not an integer") }
        return i
    }

    public func double(_ key: String) throws -> Double {
        guard let v = metadata[key] else { throw GGUFError("missing metadata key '\(key)'") }
        guard let d = v.doubleValue else { throw GGUFError("metadata key '\(key)' is not a number") }
        return d
    }

    public func array(_ key: String) throws -> [GGUFValue] {
        guard let v = metadata[key] else { throw GGUFError("missing metadata key '\(key)'") }
        guard let a = v.arrayValue else { throw GGUFError("metadata key '\(key)' is not an array") }
        return a
    }

    public func stringArray(_ key: String) throws -> [String] {
        try array(key).map { v in
            guard let s = v.stringValue else { throw GGUFError("metadata key '\(key)' is not an array of strings") }
            return s
        }
    }
}

/// A bounds-checked little-endian reader over the mapped header.
private struct ByteReader {
    let base: UnsafeRawPointer
    let size: Int
    var position = 0
    /// Elements read in all metadata arrays so far, bounded by `maxArrayElements`.
    var arrayElements = 0
    /// Far above what real vocabularies need (262,144 tokens with scores and types; ~500,000 merges): keeps a
    /// hostile file's metadata under ~0.5 GB of memory.
    static let maxArrayElements = 1 << 25

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        guard position + n <= size else { throw GGUFError("GGUF header is truncated at byte \(position)") }
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
        position += n
        return v
    }

    mutating func readCount(_ what: String, limit: Int) throws -> Int {
        let n = try read(UInt64.self)
        guard n <= UInt64(limit) else { throw GGUFError("GGUF \(what) \(n) is impossible for a file of \(size) bytes") }
        return Int(n)
    }

    mutating func readString() throws -> String {
        let length = try read(UInt64.self)
        guard length <= UInt64(size - position) else { throw GGUFError("GGUF string of \(length) bytes runs past the end of the file") }
        let n = Int(length)
        let buffer = UnsafeRawBufferPointer(start: base + position, count: n)
        position += n
        return String(decoding: buffer, as: UTF8.self)
    }

    mutating func readValue(typeID: UInt32, depth: Int) throws -> GGUFValue {
        switch typeID {
        case 0: return .uint8(try read(UInt8.self))
        case 1: return .int8(try read(Int8.self))
        case 2: return .uint16(try read(UInt16.self))
        case 3: return .int16(try read(Int16.self))
        case 4: return .uint32(try read(UInt32.self))
        case 5: return .int32(try read(Int32.self))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self)))
        case 7:
            let b = try read(UInt8.self)
            guard b <= 1 else { throw GGUFError("GGUF bool value \(b) is not 0 or 1") }
            return .bool(b == 1)
        case 8: return .string(try readString())
        case 9:
            guard depth < 8 else { throw GGUFError("GGUF arrays nested too deeply") }
            let elementType = try read(UInt32.self)
            // Check the element type even for empty arrays, and bound the length by what the rest of
            // the file could hold at the element type's smallest encoding.
            guard let minimumSize = Self.minimumEncodedSize(typeID: elementType) else {
                throw GGUFError("unknown GGUF metadata value type \(elementType) in an array")
            }
            let count = try readCount("array length", limit: max(0, size - position - 8) / minimumSize)
            arrayElements += count
            guard arrayElements <= Self.maxArrayElements else {
                throw GGUFError("GGUF metadata arrays hold more than \(Self.maxArrayElements) elements in all")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(min(count, 1 << 20))
            for _ in 0..<count { values.append(try readValue(typeID: elementType, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint64(try read(UInt64.self))
        case 11: return .int64(try read(Int64.self))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self)))
        default: throw GGUFError("unknown GGUF metadata value type \(typeID)")
        }
    }

    /// Smallest number of bytes a value of GGUF type `typeID` occupies (nil for an unknown type).
    static func minimumEncodedSize(typeID: UInt32) -> Int? {
        switch typeID {
        case 0, 1, 7: return 1          // uint8, int8, bool
        case 2, 3: return 2             // uint16, int16
        case 4, 5, 6: return 4          // uint32, int32, float32
        case 10, 11, 12: return 8       // uint64, int64, float64
        case 8: return 8                // string: its length
        case 9: return 12               // array: element type and count
        default: return nil
        }
    }
}
