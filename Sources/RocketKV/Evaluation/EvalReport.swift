import Foundation

/// `report.html`: a self-contained page (inline SVG, no scripts) with a needle heatmap per method and
/// budget, accuracy-versus-budget curves per task, and the fidelity table.
public enum EvalReport {
    public static func html(predictions: [EvalPrediction], settings: [String: [EvalSettings]]) -> String {
        let metrics = EvalMetric.summarize(predictions)
        var body = "<h1>RocketKV evaluation</h1>\n"
        if let model = settings.values.first?.first?.model { body += "<p class=note>Model: \(escape(model)).</p>\n" }
        for task in ["passkey", "ruler", "multiturn", "fidelity"] where predictions.contains(where: { $0.task == task || $0.task.hasPrefix(task + "/") }) {
            let taskPredictions = predictions.filter { $0.task == task }
            body += "<h2>\(task)</h2>\n"
            for s in settings[task] ?? [] {
                body += "<p class=note>sweep: methods \(s.methods.joined(separator: ", ")); budgets \(s.budgets.map(String.init).joined(separator: ", ")); lengths \(s.lengths.map(String.init).joined(separator: ", ")) tokens; \(s.samples) sample(s); seed \(s.seed); haystack \(escape(s.haystack))</p>\n"
            }
            if task == "ruler" {
                let rulerMetrics = metrics.filter { $0.task.hasPrefix("ruler/") }
                let averaged = rulerMetrics.filter { $0.task == "ruler/mean" }
                body += "<div class=grid>" + Array(Set(averaged.map(\.length))).sorted().map { length in
                    "<div class=cell><b>\(length) tokens, mean over tasks</b><br>" + curves(averaged.filter { $0.length == length }, task: task) + "</div>"
                }.joined() + "</div>\n"
                body += "<p class=note>mean: over all tasks; mean-solved: over the tasks on which full scores above \(String(format: "%.0f", EvalMetric.unsolvedTaskAccuracy)) %. Intervals: bootstrap over prompts, within each task.</p>\n"
                body += table(rulerMetrics.filter { $0.task.hasPrefix("ruler/mean") }, task: task)
                body += table(rulerMetrics.filter { !$0.task.hasPrefix("ruler/mean") }, task: task)
                continue
            }
            let taskMetrics = metrics.filter { $0.task == task }
            let lengths = Array(Set(taskMetrics.map(\.length))).sorted()
            body += "<div class=grid>" + lengths.map { length in
                "<div class=cell><b>\(length) tokens</b><br>" + curves(taskMetrics.filter { $0.length == length }, task: task) + "</div>"
            }.joined() + "</div>\n"
            body += "<p class=note>Bars (and the bands of methods without a budget): 95 % intervals, Wilson for proportions of 0/1 scores, bootstrap over prompts for means of partial scores.</p>\n"
            if task == "passkey" { body += heatmaps(taskPredictions) }
            body += table(metrics.filter { $0.task == task }, task: task)
        }
        return """
        <!doctype html><html><head><meta charset="utf-8"><title>RocketKV evaluation</title><style>
        body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
        h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
        .note{color:#666;font-size:.9em}
        table{border-collapse:collapse;font-size:.9em;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
        th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
        .grid{display:flex;flex-wrap:wrap;gap:14px}.cell{font-size:.8em;text-align:center}
        </style></head><body>
        \(body)
        </body></html>
        """
    }

    /// Accuracy (mean over lengths) against budget, one line per method with each point's 95 % interval as a bar;
    /// budgetless methods as dashed levels inside a band of their interval.
    static func curves(_ metrics: [EvalMetric], task: String) -> String {
        let budgets = Array(Set(metrics.compactMap(\.budget))).sorted()
        let methods = orderedUnique(metrics.map(\.method))
        guard !budgets.isEmpty else { return "" }
        let width = 560.0, height = 300.0, left = 50.0, right = 150.0, top = 20.0, bottom = 40.0
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ budget: Int) -> Double {
            budgets.count == 1 ? left + plotW / 2
                : left + plotW * (log2(Double(budget)) - log2(Double(budgets[0]))) / (log2(Double(budgets.last!)) - log2(Double(budgets[0])))
        }
        func y(_ accuracy: Double) -> Double { top + plotH * (1 - accuracy / 100) }
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(height))' font-size='11'>"
        for a in stride(from: 0.0, through: 100, by: 25) {
            svg += "<line x1='\(left)' x2='\(left + plotW)' y1='\(y(a))' y2='\(y(a))' stroke='#eee'/><text x='\(left - 6)' y='\(y(a) + 4)' text-anchor='end'>\(Int(a))</text>"
        }
        for b in budgets { svg += "<text x='\(x(b))' y='\(top + plotH + 16)' text-anchor='middle'>\(b)</text>" }
        svg += "<text x='\(left + plotW / 2)' y='\(height - 6)' text-anchor='middle'>token budget</text>"
        svg += "<text x='12' y='\(top + plotH / 2)' transform='rotate(-90 12 \(top + plotH / 2))' text-anchor='middle'>\(task == "fidelity" ? "top-1 agreement %" : "accuracy %")</text>"
        for (index, method) in methods.enumerated() {
            let color = palette[index % palette.count]
            let rows = metrics.filter { $0.method == method }
            let legendY = top + 14 * Double(index)
            svg += "<text x='\(left + plotW + 24)' y='\(legendY + 4)' fill='\(color)'>\(method)</text>"
            if rows.allSatisfy({ $0.budget == nil }) {
                let level = rows.map(\.accuracy).reduce(0, +) / Double(rows.count)
                if rows.count == 1, let interval = rows.first?.interval {   // its 95 % interval as a band
                    svg += "<rect class='ci' x='\(left)' y='\(y(interval.high))' width='\(plotW)' height='\(y(interval.low) - y(interval.high))' fill='\(color)' fill-opacity='0.08'>"
                        + "<title>\(escape(method)): \(describe(rows[0]))</title></rect>"
                }
                svg += "<line x1='\(left)' x2='\(left + plotW)' y1='\(y(level))' y2='\(y(level))' stroke='\(color)' stroke-dasharray='5 4'/>"
                svg += "<line x1='\(left + plotW + 6)' x2='\(left + plotW + 20)' y1='\(legendY)' y2='\(legendY)' stroke='\(color)' stroke-dasharray='4 2'/>"
                continue
            }
            // Methods side by side at a budget are nudged apart so that their interval bars stay readable.
            let nudge = (Double(index) - Double(methods.count - 1) / 2) * 4
            let cells = budgets.compactMap { b -> (budget: Int, x: Double, metrics: [EvalMetric])? in
                let r = rows.filter { $0.budget == b }
                return r.isEmpty ? nil : (b, x(b) + nudge, r)
            }
            let points = cells.map { ($0.x, y($0.metrics.map(\.accuracy).reduce(0, +) / Double($0.metrics.count))) }
            svg += "<polyline fill='none' stroke='\(color)' stroke-width='2' points='\(points.map { "\($0.0),\($0.1)" }.joined(separator: " "))'/>"
            // Each point's 95 % interval as an error bar (a point averaged over configurations has none).
            for cell in cells where cell.metrics.count == 1 {
                let metric = cell.metrics[0], cx = cell.x, low = y(metric.interval.low), high = y(metric.interval.high)
                svg += "<path class='ci' d='M\(cx - 3),\(high)H\(cx + 3)M\(cx),\(high)V\(low)M\(cx - 3),\(low)H\(cx + 3)' stroke='\(color)' stroke-width='1'>"
                    + "<title>\(escape(method)) @ \(cell.budget): \(describe(metric))</title></path>"
            }
            for p in points { svg += "<circle cx='\(p.0)' cy='\(p.1)' r='3' fill='\(color)'/>" }
            svg += "<line x1='\(left + plotW + 6)' x2='\(left + plotW + 20)' y1='\(legendY)' y2='\(legendY)' stroke='\(color)' stroke-width='2'/>"
        }
        return svg + "</svg>\n"
    }

    /// "62.5 % [50–75], n = 20, bootstrap": a point of a curve with its 95 % interval, for the bar's tooltip.
    static func describe(_ metric: EvalMetric) -> String {
        String(format: "%.1f %% [%.0f–%.0f], n = %d, ", metric.accuracy, metric.interval.low, metric.interval.high, metric.count)
            + metric.interval.method
    }

    /// One length × depth grid per method and budget, green for found, red for missed.
    static func heatmaps(_ predictions: [EvalPrediction]) -> String {
        let lengths = Array(Set(predictions.map(\.length))).sorted()
        let depths = Array(Set(predictions.compactMap(\.depth))).sorted()
        let runs = orderedUnique(predictions.map { "\($0.method)|\($0.budget.map(String.init) ?? "")" })
        let cell = 22.0, left = 44.0, top = 16.0
        var html = "<h3>Needle heatmaps (rows: length in tokens, columns: depth)</h3><div class=grid>"
        for run in runs {
            let parts = run.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            let rows = predictions.filter { $0.method == parts[0] && ($0.budget.map(String.init) ?? "") == parts[1] }
            let width = left + cell * Double(depths.count) + 4, height = top + cell * Double(lengths.count) + 18
            var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(height))' font-size='9'>"
            for (i, length) in lengths.enumerated() {
                svg += "<text x='\(left - 4)' y='\(top + cell * (Double(i) + 0.65))' text-anchor='end'>\(length)</text>"
                for (j, depth) in depths.enumerated() {
                    let scores = rows.filter { $0.length == length && $0.depth == depth }.map(\.score)
                    let fill = scores.isEmpty ? "#eee" : heatColor(scores.reduce(0, +) / Double(scores.count))
                    svg += "<rect x='\(left + cell * Double(j))' y='\(top + cell * Double(i))' width='\(cell - 2)' height='\(cell - 2)' fill='\(fill)'><title>length \(length), depth \(depth): \(scores.map { String(format: "%.0f", $0) }.joined(separator: ","))</title></rect>"
                }
            }
            for (j, depth) in depths.enumerated() where depths.count <= 6 || j % 2 == 0 {
                svg += "<text x='\(left + cell * (Double(j) + 0.45))' y='\(top + cell * Double(lengths.count) + 12)' text-anchor='middle'>\(String(format: "%.2g", depth))</text>"
            }
            let title = parts[1].isEmpty ? parts[0] : "\(parts[0]) @ \(parts[1])"
            svg += "<text x='\(left)' y='11' font-size='11'>\(escape(title))</text></svg>"
            html += "<div class=cell>\(svg)</div>"
        }
        return html + "</div>\n"
    }

    static func table(_ metrics: [EvalMetric], task: String) -> String {
        let fidelity = task == "fidelity"
        let passkey = task == "passkey"
        var html = "<table><tr>" + (task == "ruler" ? "<th>task</th>" : "") + "<th>method</th><th>budget</th><th>length</th><th>n</th><th>\(fidelity ? "top-1 agree %" : "accuracy %")</th><th>95 % interval</th>"
        html += fidelity ? "<th>KL (nats)</th><th>perplexity</th>" : passkey ? "<th>substring %</th><th>95 % interval</th><th>partial %</th>" : ""
        html += "<th>KV read / step</th><th>options</th></tr>"
        for m in metrics {
            html += "<tr>" + (task == "ruler" ? "<td>\(m.task.dropFirst("ruler/".count))</td>" : "") + "<td>\(m.method)</td><td>\(m.budget.map(String.init) ?? "–")</td><td>\(m.length)</td><td>\(m.count)</td><td>\(String(format: "%.1f", m.accuracy))</td><td>\(m.interval.text) \(m.interval.method)</td>"
            if fidelity {
                html += "<td>\(String(format: "%.4f", m.kl ?? 0))</td><td>\(String(format: "%.3f", m.perplexity ?? 0))</td>"
            } else if passkey {
                html += "<td>\(m.substring.map { String(format: "%.1f", $0) } ?? "–")</td><td>\(m.substringInterval?.text ?? "–")</td><td>\(m.partial.map { String(format: "%.1f", $0) } ?? "–")</td>"
            }
            html += "<td>\(String(format: "%.2f MiB", m.kvReadBytesPerStep / 1_048_576))" + (m.kvIdealReadBytesPerStep.map { String(format: " (ideal %.2f)", $0 / 1_048_576) } ?? "") + "</td>"
            html += "<td>\(escape(m.options))</td></tr>"
        }
        return html + "</table>\n"
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// Red (0) through yellow to green (1).
    static func heatColor(_ score: Double) -> String {
        let s = min(1, max(0, score))
        let r = s < 0.5 ? 215 : Int(215 - (s - 0.5) * 2 * 170), g = s < 0.5 ? Int(60 + s * 2 * 140) : 200
        return String(format: "#%02x%02x%02x", r, g, s < 0.5 ? 50 : Int(50 + (s - 0.5) * 2 * 30))
    }

    static func orderedUnique(_ values: [String]) -> [String] {
        var seen = Set<String>()
        return values.filter { seen.insert($0).inserted }
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
