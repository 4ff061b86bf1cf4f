import CKernels

/// How a KV cache stores each row of `headDim` keys or values: f16 (llama.cpp's default cache), or ggml's
/// Q8_0 / Q4_0 blocks of 32 values with an f16 scale (llama.cpp's `-ctk q8_0 -ctv q8_0`): about half or a
/// quarter of the bytes. Every method stores and reads its rows through `KVStream` and `Attention`, so the type
/// is chosen once per cache (`KVMethodContext.kvType`) and no method changes with it.
public enum KVRowType: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case f16
    case q8_0
    case q4_0

    /// The ggml type id the C kernels take.
    var kernelType: Int32 {
        switch self {
        case .f16: return 1
        case .q8_0: return RK_KV_Q8_0
        case .q4_0: return RK_KV_Q4_0
        }
    }

    public var isQuantized: Bool { self != .f16 }

    /// Bytes of one row of `headDim` values (f16: 2 per value; Q8_0: 34 per 32; Q4_0: 18 per 32).
    public func rowBytes(headDim: Int) -> Int { rk_kv_row_bytes(kernelType, Int32(headDim)) }

    /// Throws unless rows of `headDim` values fit this type: the quantized types need whole blocks of 32.
    public func check(headDim: Int) throws {
        if isQuantized && headDim % 32 != 0 {
            throw KVMethodError("--kv-type \(rawValue) needs a head dimension that is a multiple of 32 (the model's is \(headDim)); use --kv-type f16")
        }
    }

    /// The type named `text` (`f16`, `q8_0`, `q4_0`).
    public init(parsing text: String) throws {
        guard let type = KVRowType(rawValue: text) else {
            throw KVMethodError("--kv-type \(text): must be one of \(KVRowType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = type
    }

    public var description: String { rawValue }
}

/// The row types of a cache's keys and of its values (llama.cpp's `-ctk` and `-ctv`), written `q8_0` for both
/// halves alike or `KEY/VALUE`, e.g. `q8_0/q4_0`: keys lose more to quantization than values do (EVALUATION.md,
/// "Keys or values"), so Q8_0 keys with Q4_0 values store 0.41× the bytes of f16 for a smaller cost than Q4_0
/// throughout. f16 does not mix with a quantized type: a quantized half takes the flash-attention arithmetic
/// (`rk_kv_attend`) for both.
public struct KVCacheType: Hashable, Sendable, Codable, CustomStringConvertible {
    public let key: KVRowType
    public let value: KVRowType

    public static let f16 = KVCacheType(.f16)
    public static let q8_0 = KVCacheType(.q8_0)
    public static let q4_0 = KVCacheType(.q4_0)
    /// Every supported pairing: the three uniform types, then the mixed quantized ones.
    public static let allCases = [f16, q8_0, q4_0, KVCacheType(key: .q8_0, value: .q4_0), KVCacheType(key: .q4_0, value: .q8_0)]

    /// Keys and values both of `type`.
    public init(_ type: KVRowType) { self.init(key: type, value: type) }

    public init(key: KVRowType, value: KVRowType) {
        precondition(key.isQuantized == value.isQuantized, "f16 does not mix with a quantized type (\(key)/\(value))")
        self.key = key
        self.value = value
    }

    /// `TYPE` or `KEY/VALUE` (`f16`, `q8_0`, `q4_0`, `q8_0/q4_0`, ...).
    public init(parsing text: String) throws {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { throw KVMethodError("--kv-type \(text): one type, or KEY/VALUE such as q8_0/q4_0") }
        let key = try KVRowType(parsing: halves[0]), value = try KVRowType(parsing: halves.last!)
        guard key.isQuantized == value.isQuantized else {
            throw KVMethodError("--kv-type \(text): f16 does not mix with a quantized type; use f16, or quantized keys and values such as q8_0/q4_0")
        }
        self.init(key: key, value: value)
    }

    public var isQuantized: Bool { key.isQuantized }

    /// Throws unless rows of `headDim` values fit both types.
    public func check(headDim: Int) throws {
        for type in Set([key, value]) { try type.check(headDim: headDim) }
    }

    /// Bytes of one key row plus one value row.
    public func rowPairBytes(headDim: Int) -> Int { key.rowBytes(headDim: headDim) + value.rowBytes(headDim: headDim) }

    public var description: String { key == value ? key.rawValue : "\(key)/\(value)" }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
