// Reference dequantization of GGML tensor data to Float.
//
// These are plain, per-element implementations written for clarity and for checking faster kernels
// against. Each follows the block layout of ggml-common.h and the element order of ggml's
// `dequantize_row_*` functions, and does the float arithmetic in the same order as gguf-py's numpy
// reference (`gguf.quants`), so results are bit-identical to it.
//
// Every `GGMLType` case is implemented, so dequantization never fails for a known type id.
// All multi-byte fields are little-endian and may be unaligned (GGUF blocks are packed).

/// Converts IEEE 754 binary16 bits to Float, exactly (subnormals, infinities and NaN payloads kept).
///
/// Written out rather than using `Float16`, which is unavailable on some platforms (macOS on x86_64).
@inlinable
public func floatFromHalf(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1F
    let mantissa = UInt32(bits & 0x03FF)
    if exponent == 0x1F {  // infinity or NaN: widen the payload
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent != 0 {  // normal: rebias the exponent from 15 to 127
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }
    // Zero or subnormal: mantissa * 2^-24, exact in Float.
    let magnitude = Float(mantissa) * 0x1p-24
    return sign != 0 ? -magnitude : magnitude
}

/// Converts bfloat16 bits to Float (exact: bfloat16 is the upper half of a Float).
@inlinable
public func floatFromBFloat16(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Dequantizes `count` elements of GGML `type` data at `source` into `destination`.
///
/// - Parameters:
///   - type: the storage type. Every `GGMLType` is supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
///     Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K).
///   - source: the first block; `type.byteCount(elements: count)` bytes are read. No alignment needed.
///   - count: number of elements; must be a non-negative multiple of `type.blockSize`
///     (a precondition: GGUFFile already rejects tensors whose rows are not whole blocks).
///   - destination: room for `count` floats.
///
/// Q8_1 uses the current ggml layout (fp16 `d`, fp16 `s`, 32 int8 quants: 36 bytes, as
/// `GGMLType.bytesPerBlock`); gguf-py's size table still lists an older 40-byte layout.
/// Q8_1 and Q8_K are ggml's intermediate activation types and are not expected in model files.
public func dequantize(_ type: GGMLType, from source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
    precondition(count >= 0 && count % type.blockSize == 0,
                 "dequantize: \(count) elements is not a whole number of \(type.name) blocks of \(type.blockSize)")
    let blockBytes = type.bytesPerBlock
    let blockSize = type.blockSize
    let blockCount = count / blockSize

    func eachBlock(_ body: (Block, UnsafeMutablePointer<Float>) -> Void) {
        for b in 0..<blockCount {
            body(Block(source + b * blockBytes), destination + b * blockSize)
        }
    }

    switch type {
    case .f32:
        for i in 0..<count { destination[i] = Float(bitPattern: Block(source).u32(4 * i)) }
    case .f16:
        for i in 0..<count { destination[i] = floatFromHalf(Block(source).u16(2 * i)) }
    case .bf16:
        for i in 0..<count { destination[i] = floatFromBFloat16(Block(source).u16(2 * i)) }
    case .q4_0: eachBlock(dequantizeQ4_0)
    case .q4_1: eachBlock(dequantizeQ4_1)
    case .q5_0: eachBlock(dequantizeQ5_0)
    case .q5_1: eachBlock(dequantizeQ5_1)
    case .q8_0: eachBlock(dequantizeQ8_0)
    case .q8_1: eachBlock(dequantizeQ8_1)
    case .q2_K: eachBlock(dequantizeQ2_K)
    case .q3_K: eachBlock(dequantizeQ3_K)
    case .q4_K: eachBlock(dequantizeQ4_K)
    case .q5_K: eachBlock(dequantizeQ5_K)
    case .q6_K: eachBlock(dequantizeQ6_K)
    case .q8_K: eachBlock(dequantizeQ8_K)
    }
}

/// Dequantizes `count` elements into a new array.
public func dequantize(_ type: GGMLType, from source: UnsafeRawPointer, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        if count > 0 { dequantize(type, from: source, count: count, into: buffer.baseAddress!) }
        initialized = count
    }
}

/// Dequantizes row `row` of `tensor` (a row is `tensor.shape[0]` contiguous elements) into `destination`,
/// e.g. one token's embedding. `destination` must hold at least `tensor.shape[0]` floats.
public func dequantizeRow(_ row: Int, of tensor: GGUFTensorInfo, in file: GGUFFile, into destination: UnsafeMutableBufferPointer<Float>) {
    let rowLength = tensor.shape[0]
    let rowCount = tensor.elementCount / rowLength
    precondition(row >= 0 && row < rowCount, "row \(row) is outside tensor '\(tensor.name)' (\(rowCount) rows)")
    precondition(destination.count >= rowLength, "destination holds \(destination.count) floats, row has \(rowLength)")
    let rowBytes = tensor.type.byteCount(elements: rowLength)
    dequantize(tensor.type, from: file.data(of: tensor) + row * rowBytes, count: rowLength, into: destination.baseAddress!)
}

/// Dequantizes a whole tensor into a new array (in GGML order: row 0 first).
public func dequantizeTensor(_ tensor: GGUFTensorInfo, in file: GGUFFile) -> [Float] {
    dequantize(tensor.type, from: file.data(of: tensor), count: tensor.elementCount)
}

// MARK: - Block readers

/// Little-endian, alignment-free field access within one block.
struct Block {
    let base: UnsafeRawPointer
    init(_ base: UnsafeRawPointer) { self.base = base }
    @inline(__always) func u8(_ offset: Int) -> UInt8 { base.load(fromByteOffset: offset, as: UInt8.self) }
    @inline(__always) func i8(_ offset: Int) -> Int8 { Int8(bitPattern: u8(offset)) }
    @inline(__always) func u16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inline(__always) func u32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inline(__always) func half(_ offset: Int) -> Float { floatFromHalf(u16(offset)) }
}

// MARK: - 32-element blocks

/// Q4_0 (18 bytes): fp16 d, 16 bytes of nibbles. Element j is the low nibble of byte j,
/// element j+16 the high nibble; value = d * (q - 8).
private func dequantizeQ4_0(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0)
    for j in 0..<16 {
        let byte = b.u8(2 + j)
        y[j] = d * Float(Int(byte & 0x0F) - 8)
        y[j + 16] = d * Float(Int(byte >> 4) - 8)
    }
}

/// Q4_1 (20 bytes): fp16 d, fp16 m, 16 bytes of nibbles; value = d * q + m.
private func dequantizeQ4_1(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0), m = b.half(2)
    for j in 0..<16 {
        let byte = b.u8(4 + j)
        y[j] = d * Float(byte & 0x0F) + m
        y[j + 16] = d * Float(byte >> 4) + m
    }
}

/// Q5_0 (22 bytes): fp16 d, 32-bit qh (bit i = 5th bit of element i), 16 bytes of nibbles;
/// value = d * (q - 16).
private func dequantizeQ5_0(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0)
    let qh = b.u32(2)
    for j in 0..<16 {
        let byte = b.u8(6 + j)
        let q0 = Int(byte & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
        let q1 = Int(byte >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
        y[j] = d * Float(q0 - 16)
        y[j + 16] = d * Float(q1 - 16)
    }
}

/// Q5_1 (24 bytes): fp16 d, fp16 m, 32-bit qh, 16 bytes of nibbles; value = d * q + m.
private func dequantizeQ5_1(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0), m = b.half(2)
    let qh = b.u32(4)
    for j in 0..<16 {
        let byte = b.u8(8 + j)
        let q0 = UInt32(byte & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
        let q1 = UInt32(byte >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
        y[j] = d * Float(q0) + m
        y[j + 16] = d * Float(q1) + m
    }
}

/// Q8_0 (34 bytes): fp16 d, 32 int8 quants; value = d * q.
private func dequantizeQ8_0(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0)
    for j in 0..<32 { y[j] = Float(b.i8(2 + j)) * d }
}

/// Q8_1 (36 bytes): fp16 d, fp16 s (= d * sum of quants, unused here), 32 int8 quants; value = d * q.
private func dequantizeQ8_1(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0)
    for j in 0..<32 { y[j] = Float(b.i8(4 + j)) * d }
}

// MARK: - 256-element super-blocks (k-quants)

/// Q2_K (84 bytes): scales[16] (low nibble: scale, high nibble: min, per 16 elements), qs[64]
/// (2-bit quants), fp16 d, fp16 dmin. Element i: 128-element half g = i/128, r = i%128;
/// quant = bits 2*(r/32) of qs[32g + r%32]; value = (d * scale) * q - (dmin * min).
private func dequantizeQ2_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(80), dmin = b.half(82)
    for i in 0..<256 {
        let g = i / 128, r = i % 128
        let sc = b.u8(i / 16)
        let q = (b.u8(16 + 32 * g + r % 32) >> UInt8(2 * (r / 32))) & 3
        let dl = d * Float(sc & 0x0F)
        let ml = dmin * Float(sc >> 4)
        y[i] = dl * Float(q) - ml
    }
}

/// Q3_K (110 bytes): hmask[32] (high bit), qs[64] (low 2 bits), scales[12] (sixteen 6-bit scales,
/// offset by 32), fp16 d. Element i: low bits as in Q2_K; high bit = bit i/32 of hmask[i%32];
/// q = low - (high ? 0 : 4); value = (d * (scale - 32)) * q.
private func dequantizeQ3_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(108)
    for s in 0..<16 {  // 16 groups of 16 elements, one scale each
        // Scale bits: low 4 in bytes 0...7 (low nibbles for s < 8, high nibbles for s >= 8),
        // high 2 in bytes 8...11 (field 2*(s/4) of byte 8 + s%4).
        let low = s < 8 ? b.u8(96 + s) & 0x0F : b.u8(96 + s - 8) >> 4
        let high = (b.u8(96 + 8 + s % 4) >> UInt8(2 * (s / 4))) & 3
        let dl = d * Float(Int(low | high << 4) - 32)
        for l in 0..<16 {
            let i = 16 * s + l
            let g = i / 128, r = i % 128
            let q = Int((b.u8(32 + 32 * g + r % 32) >> UInt8(2 * (r / 32))) & 3)
            let hasHighBit = (b.u8(i % 32) >> UInt8(i / 32)) & 1 != 0
            y[i] = dl * Float(q - (hasHighBit ? 0 : 4))
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..<8) from the 12 packed bytes of Q4_K/Q5_K
/// (ggml's get_scale_min_k4): sub-blocks 0...3 use the low 6 bits of bytes j and j+4; sub-blocks
/// 4...7 take 4 low bits from byte j+4 and their top 2 bits from the spare high bits of bytes j-4 / j.
@inline(__always)
private func scaleMinK4(_ j: Int, _ b: Block, at offset: Int) -> (scale: UInt8, min: UInt8) {
    if j < 4 {
        return (b.u8(offset + j) & 63, b.u8(offset + j + 4) & 63)
    }
    let scale = (b.u8(offset + j + 4) & 0x0F) | ((b.u8(offset + j - 4) >> 6) << 4)
    let min = (b.u8(offset + j + 4) >> 4) | ((b.u8(offset + j) >> 6) << 4)
    return (scale, min)
}

/// Q4_K (144 bytes): fp16 d, fp16 dmin, scales[12] (8 sub-blocks of 32), qs[128].
/// Element i: sub-block s = i/32; nibble (s%2) of qs[32*(s/2) + i%32];
/// value = (d * scale) * q - (dmin * min).
private func dequantizeQ4_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0), dmin = b.half(2)
    for s in 0..<8 {
        let (scale, min) = scaleMinK4(s, b, at: 4)
        let d1 = d * Float(scale), m1 = dmin * Float(min)
        for l in 0..<32 {
            let q = (b.u8(16 + 32 * (s / 2) + l) >> UInt8(4 * (s % 2))) & 0x0F
            y[32 * s + l] = d1 * Float(q) - m1
        }
    }
}

/// Q5_K (176 bytes): fp16 d, fp16 dmin, scales[12], qh[32] (bit s of qh[l] is the 5th bit of element
/// 32s + l), qs[128] (as Q4_K); value = (d * scale) * q - (dmin * min).
private func dequantizeQ5_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(0), dmin = b.half(2)
    for s in 0..<8 {
        let (scale, min) = scaleMinK4(s, b, at: 4)
        let d1 = d * Float(scale), m1 = dmin * Float(min)
        for l in 0..<32 {
            let low = (b.u8(48 + 32 * (s / 2) + l) >> UInt8(4 * (s % 2))) & 0x0F
            let high = (b.u8(16 + l) >> UInt8(s)) & 1
            y[32 * s + l] = d1 * Float(low | high << 4) - m1
        }
    }
}

/// Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8, per 16 elements),
/// fp16 d. Element i: half g = i/128, r = i%128; low = nibble r/64 of ql[64g + r%64];
/// high = bits 2*(r/32) of qh[32g + r%32]; value = (d * scale) * ((low | high << 4) - 32).
private func dequantizeQ6_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = b.half(208)
    for i in 0..<256 {
        let g = i / 128, r = i % 128
        let low = (b.u8(64 * g + r % 64) >> UInt8(4 * (r / 64))) & 0x0F
        let high = (b.u8(128 + 32 * g + r % 32) >> UInt8(2 * (r / 32))) & 3
        let scale = d * Float(b.i8(192 + i / 16))
        y[i] = scale * Float(Int(low | high << 4) - 32)
    }
}

/// Q8_K (292 bytes): Float32 d, 256 int8 quants, 16 int16 block sums (unused here); value = d * q.
private func dequantizeQ8_K(_ b: Block, _ y: UnsafeMutablePointer<Float>) {
    let d = Float(bitPattern: b.u32(0))
    for j in 0..<256 { y[j] = Float(b.i8(4 + j)) * d }
}
