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
