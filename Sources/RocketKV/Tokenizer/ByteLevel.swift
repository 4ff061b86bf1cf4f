/// GPT-2's byte-level alphabet: every byte 0...255 is shown as one printable Unicode scalar, so that
/// byte-level BPE vocabularies can be stored as text.
///
/// Printable Latin-1 bytes (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) stand for themselves; the 68 remaining
/// bytes (controls, space, DEL, NBSP, soft hyphen) are numbered in byte order from U+0100 upwards
/// (so the space 0x20 is `Ġ` U+0120 and the newline 0x0A is `Ċ` U+010A).
public enum ByteLevel {
    /// The alphabet scalar standing for each byte.
    public static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if isPrintable(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `scalarForByte`, indexed by scalar value (-1 where the scalar is not in the alphabet).
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for b in 0..<256 { table[Int(scalarForByte[b])] = Int16(b) }
        return table
    }()

    /// The byte that an alphabet scalar stands for, or nil if it is not in the alphabet.
    @inline(__always)
    public static func byte(for scalar: UInt32) -> UInt8? {
        guard scalar < UInt32(byteForScalar.count) else { return nil }
        let b = byteForScalar[Int(scalar)]
        return b < 0 ? nil : UInt8(b)
    }

    /// The alphabet text for raw bytes (what a byte-level BPE vocabulary stores).
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(scalarForByte[Int(b)])!) }
        return String(s)
    }

    private static func isPrintable(_ b: Int) -> Bool {
        (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    }
}

/// Character classes used by the pre-tokenizer scanners, as llama.cpp's `unicode_cpt_flags` define them.
struct CharClass: OptionSet {
    let rawValue: UInt8
    /// Set for every scalar inside the span being scanned; empty flags mean "outside the span".
    static let present = CharClass(rawValue: 1 << 0)
    /// \p{L}: Lu, Ll, Lt, Lm, Lo.
    static let letter = CharClass(rawValue: 1 << 1)
    /// \p{N}: Nd, Nl, No.
    static let number = CharClass(rawValue: 1 << 2)
    /// \s: the Unicode White_Space set (no 0x1C...0x1F, unlike Python).
    static let whitespace = CharClass(rawValue: 1 << 3)
    /// \p{P}: Pc, Pd, Ps, Pe, Pi, Pf, Po.
    static let punctuation = CharClass(rawValue: 1 << 4)
    /// \p{S}: Sm, Sc, Sk, So.
    static let symbol = CharClass(rawValue: 1 << 5)

    static let wordLike: CharClass = [.letter, .number, .whitespace]

    /// Classes of the Basic Multilingual Plane, computed once.
    private static let bmp: [CharClass] = (0..<0x10000).map { classify(UInt32($0)) }

    @inline(__always)
    static func of(_ cp: UInt32) -> CharClass {
        cp < 0x10000 ? bmp[Int(cp)] : classify(cp)
    }

    /// The Unicode version of llama.cpp's character tables (unicode-data.cpp): characters assigned
    /// later are unassigned there (neither letters, numbers, punctuation nor symbols).
    static let unicodeVersion = (major: 15, minor: 1)

    private static func classify(_ cp: UInt32) -> CharClass {
        var c: CharClass = .present
        if isWhitespace(cp) { c.insert(.whitespace) }
        guard let scalar = Unicode.Scalar(cp), let age = scalar.properties.age,
              (age.major, age.minor) <= unicodeVersion else { return c }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            c.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            c.insert(.punctuation)
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            c.insert(.symbol)
        default:
            break
        }
        return c
    }

    /// llama.cpp's whitespace set (the Unicode White_Space property).
    private static func isWhitespace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}
