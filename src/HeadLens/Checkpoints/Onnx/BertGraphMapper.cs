namespace HeadLens.Checkpoints.Onnx;

/// <summary>
/// Maps a BERT-family encoder exported to ONNX (torch.onnx / Hugging Face export, opset 11–17) onto Hugging Face
/// BERT names and layouts by following the graph, not by trusting names: the projection matrices of a torch export
/// are numbered initializers (<c>927</c>, <c>928</c>, ...), so each is found as the weight of a <c>MatMul</c> whose
/// output feeds an <c>Add</c> with a bias, and its role (query, key, value, output, intermediate, output dense) comes
/// from where that value goes: Q and K meet in the score <c>MatMul</c> (Q on the left), V meets the Softmax in the
/// context <c>MatMul</c>, and so on. Where the biases carry Hugging Face names (they do in torch exports) the name
/// must agree with the role found, or the graph is refused.
///
/// The pattern, per block (post-norm; x = the block's input, [B, T, C]):
/// <code>
///   q, k, v = x·Wq + bq, x·Wk + bk, x·Wv + bv          MatMul + Add; Reshape [B, T, H, D] + Transpose
///   p = Softmax(q·kᵀ / √D + mask)                       MatMul, Div (or Mul by 1/√D), Add, Softmax → p [B, H, T, T]
///   a = LayerNorm(x + (p·v)·Wo + bo)                   MatMul, Transpose + Reshape, MatMul + Add, Add, LayerNorm
///   y = LayerNorm(a + GELU(a·Wi + bi)·W2 + b2)          GELU = x·½·(1 + erf(x/√2)): Div, Erf, Add, Mul, Mul
/// </code>
/// LayerNorm is either the opset-17 <c>LayerNormalization</c> node or torch's decomposition
/// (ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β). The config comes from the graph: heads and
/// head size from the constant shape the head-splitting Reshape uses (torch builds it with a Concat of
/// [B], [T], [H], [D]; an exporter may give a constant [0, 0, H, D]); where that shape is not constant, the head
/// size comes from the score scale (D = (√D)²). Channels, vocabulary, positions and token types are the embedding
/// tables' shapes; the MLP width is the intermediate weight's; ε is the LayerNorm constant (one for the graph).
/// </summary>
internal sealed class BertGraphMapper
{
    // The Hugging Face BERT names, one table for the whole format. ONNX MatMul computes x·W with W stored [in, out];
    // Hugging Face (torch nn.Linear) stores [out, in]: every projection weight is transposed on the way out.
    // Embedding tables, biases and LayerNorm parameters keep their layout.
    private const string Word = "embeddings.word_embeddings.weight";               // [V, C]
    private const string Position = "embeddings.position_embeddings.weight";       // [P, C]
    private const string TokenType = "embeddings.token_type_embeddings.weight";    // [types, C]
    private const string EmbeddingNorm = "embeddings.LayerNorm";                  // .weight, .bias [C]
    private const string Query = "attention.self.query";                         // .weight [C, C] transposed, .bias
    private const string Key = "attention.self.key";                             // .weight [C, C] transposed, .bias
    private const string Value = "attention.self.value";                         // .weight [C, C] transposed, .bias
    private const string AttentionOutput = "attention.output.dense";             // .weight [C, C] transposed, .bias
    private const string AttentionNorm = "attention.output.LayerNorm";           // .weight, .bias [C]
    private const string Intermediate = "intermediate.dense";                    // .weight [M, C] transposed, .bias [M]
    private const string Output = "output.dense";                                // .weight [C, M] transposed, .bias [C]
    private const string OutputNorm = "output.LayerNorm";                        // .weight, .bias [C]

    private static readonly HashSet<string> LayoutOps = ["Reshape", "Transpose", "Unsqueeze", "Squeeze"];

    private readonly OnnxGraph graph;
    private readonly string source;
    private readonly Dictionary<string, OnnxNode> producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<OnnxNode>> consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BertTensor> tensors = new(StringComparer.Ordinal);
    private float? epsilon;

    private BertGraphMapper(OnnxModel model)
    {
        graph = model.Graph;
        source = model.Source;
        foreach (var node in graph.Nodes)
        {
            foreach (string output in node.Outputs)
            {
                producers[output] = node;
            }

            foreach (string input in node.Inputs.Distinct())
            {
                if (!consumers.TryGetValue(input, out var list))
                {
                    consumers[input] = list = [];
                }

                list.Add(node);
            }
        }
    }

    /// <summary>Maps a parsed model, or throws a one-line <see cref="HeadLensException"/> naming the node it cannot map.</summary>
    public static BertOnnxCheckpoint Map(OnnxModel model)
    {
        if (model.Opset is not 0 and (< 11 or > 17))
        {
            throw new HeadLensException($"{model.Source}: opset {model.Opset}; BERT graphs are read from opset 11 to 17");
        }

        return new BertGraphMapper(model).Map();
    }

    private BertOnnxCheckpoint Map()
    {
        var (hidden, inputIds, tokenTypeIds) = MapEmbeddings();
        int channels = tensors[Word].Shape[1];
        var probabilities = new List<string>();
        int heads = 0, mlpWidth = 0;
        for (int layer = 0; ; layer++)
        {
            var projections = Consumers(hidden).Where(IsProjection).ToList();
            if (projections.Count == 0 && layer > 0)
            {
                break;
            }

            var block = MapBlock(layer, hidden, projections, channels);
            hidden = block.Output;
            probabilities.Add(block.Probabilities);
            if (layer == 0)
            {
                (heads, mlpWidth) = (block.Heads, block.MlpWidth);
            }
            else if (block.Heads != heads || block.MlpWidth != mlpWidth)
            {
                throw new HeadLensException($"{source}: layer {layer} has {block.Heads} heads and MLP width {block.MlpWidth}, layer 0 {heads} and {mlpWidth}");
            }
        }

        var config = new BertConfigInfo(probabilities.Count, heads, channels, mlpWidth, tensors[Position].Shape[0],
            tensors[Word].Shape[0], tensors[TokenType].Shape[0], epsilon ?? 1e-12f);
        string? mask = graph.Inputs.FirstOrDefault(name => name.Contains("mask", StringComparison.OrdinalIgnoreCase));
        return new BertOnnxCheckpoint(config, tensors, probabilities, inputIds, mask, tokenTypeIds, hidden);
    }

    // ---- embeddings: word + position + token type, then LayerNorm ----

    private (string Hidden, string InputIds, string? TokenTypeIds) MapEmbeddings()
    {
        OnnxNode? word = null, position = null, tokenType = null;
        foreach (var node in graph.Nodes.Where(n => n.OpType == "Gather" && n.Inputs.Count == 2))
        {
            if (!graph.Initializers.TryGetValue(node.Inputs[0], out var table) || table.Dims.Count != 2 || table.DataType != OnnxDataType.Float)
            {
                continue;
            }

            string indices = node.Inputs[1];
            bool fromInput = graph.Inputs.Contains(indices);
            ref OnnxNode? slot = ref position;
            if (fromInput && indices.Contains("token_type", StringComparison.OrdinalIgnoreCase))
            {
                slot = ref tokenType;
            }
            else if (fromInput && !indices.Contains("position", StringComparison.OrdinalIgnoreCase))
            {
                slot = ref word;
            }

            if (slot is not null)
            {
                throw Fail(node, $"a second embedding lookup of the same kind as {slot.Label}");
            }

            slot = node;
        }

        if (word is null || position is null || tokenType is null)
        {
            string missing = word is null ? "word (Gather of a table by input_ids)" : position is null ? "position" : "token-type (Gather by token_type_ids)";
            throw new HeadLensException($"{source}: no {missing} embedding lookup; not a BERT-family graph this loader maps");
        }

        AddTensor(Word, word.Inputs[0], transpose: false);
        AddTensor(Position, position.Inputs[0], transpose: false);
        AddTensor(TokenType, tokenType.Inputs[0], transpose: false);
        int channels = tensors[Word].Shape[1];
        if (tensors[Position].Shape[1] != channels || tensors[TokenType].Shape[1] != channels)
        {
            throw Fail(position, $"embedding widths differ: word {channels}, position {tensors[Position].Shape[1]}, token type {tensors[TokenType].Shape[1]}");
        }

        CheckPositionIds();

        // The three lookups are summed by Adds; the sum is the LayerNorm's input.
        string sum = word.Outputs[0];
        var lookups = new HashSet<string> { word.Outputs[0], position.Outputs[0], tokenType.Outputs[0] };
        int added = 1;
        while (added < 3)
        {
            var add = Consumers(sum).FirstOrDefault(n => n.OpType == "Add")
                ?? throw Fail(Consumers(sum).FirstOrDefault() ?? word, "expected the Add that sums the word, position and token-type embeddings");
            string other = add.Inputs[0] == sum ? add.Inputs[1] : add.Inputs[0];
            added += lookups.Contains(other) ? 1
                : producers.TryGetValue(other, out var p) && p.OpType == "Add" && p.Inputs.Count(lookups.Contains) == 2 ? 2
                : throw Fail(add, "adds something other than the position and token-type embeddings");
            sum = add.Outputs[0];
        }

        string hidden = MatchLayerNorm(sum, EmbeddingNorm, channels, word);
        return (hidden, word.Inputs[1], tokenType.Inputs[1]);
    }

    // Position ids, when the graph keeps them as an initializer (torch exports the registered buffer), must be 0..P-1:
    // the loader assumes absolute positions counted from the first token.
    private void CheckPositionIds()
    {
        foreach (var (name, tensor) in graph.Initializers)
        {
            if (name.EndsWith("position_ids", StringComparison.Ordinal))
            {
                long[] ids = tensor.ToInt64s();
                for (int i = 0; i < ids.Length; i++)
                {
                    if (ids[i] != i)
                    {
                        throw new HeadLensException($"{source}: initializer '{name}' holds {ids[i]} at {i}; positions must count 0, 1, 2, ...");
                    }
                }
            }
        }
    }

    // ---- one encoder block ----

    private sealed record Block(string Output, string Probabilities, int Heads, int MlpWidth);

    private Block MapBlock(int layer, string input, List<OnnxNode> projections, int channels)
    {
        string prefix = $"encoder.layer.{layer}.";
        var anchor = producers.GetValueOrDefault(input) ?? graph.Nodes[0];
        if (projections.Count != 3)
        {
            throw Fail(projections.FirstOrDefault() ?? anchor, $"layer {layer}: the block input feeds {projections.Count} projections, expected 3 (query, key, value)");
        }

        // Each projection's value flows (through Reshape/Transpose) into a MatMul: the score MatMul for Q (left) and K
        // (right), the context MatMul for V (right).
        var flows = projections.Select(p =>
        {
            var (added, bias) = BiasAdd(p, layer);
            var (target, slot, reshape) = FollowLayout(added, layer);
            return (Projection: p, Bias: bias, Target: target, Slot: slot, Reshape: reshape);
        }).ToList();
        var score = flows.GroupBy(f => f.Target).SingleOrDefault(g => g.Count() == 2)?.Key
            ?? throw Fail(projections[0], $"layer {layer}: no MatMul where two projections (query and key) meet");
        var query = flows.SingleOrDefault(f => f.Target == score && f.Slot == 0);
        var key = flows.SingleOrDefault(f => f.Target == score && f.Slot == 1);
        var value = flows.Single(f => f.Target != score);
        if (query.Projection is null || key.Projection is null || value.Slot != 1)
        {
            throw Fail(score, $"layer {layer}: query and key do not enter the score MatMul as left and right operands");
        }

        // scores → (scale) → (+ mask) → Softmax → context MatMul with V.
        var (softmax, scale) = FollowToSoftmax(score, layer);
        var context = Consumers(softmax.Outputs[0]).SingleOrDefault()
            ?? throw Fail(softmax, $"layer {layer}: the attention probabilities feed {Consumers(softmax.Outputs[0]).Count} nodes, expected the context MatMul only");
        if (context != value.Target || context.Inputs[0] != softmax.Outputs[0])
        {
            throw Fail(context, $"layer {layer}: the attention probabilities do not meet the value projection in a MatMul");
        }

        var (heads, headSize) = HeadsOf(query.Reshape, scale, channels, layer);
        AddProjection(prefix + Query, query.Projection, query.Bias);
        AddProjection(prefix + Key, key.Projection, key.Bias);
        AddProjection(prefix + Value, value.Projection, value.Bias);

        // Heads merged back (Transpose + Reshape) → output projection → residual → LayerNorm.
        var (outputProjection, outputSlot, _) = FollowLayout(context.Outputs[0], layer);
        if (outputSlot != 0 || !IsProjection(outputProjection))
        {
            throw Fail(outputProjection, $"layer {layer}: expected the attention output projection (a MatMul with a weight initializer)");
        }

        var (attended, outputBias) = BiasAdd(outputProjection, layer);
        AddProjection(prefix + AttentionOutput, outputProjection, outputBias);
        string afterAttention = MatchLayerNorm(Residual(attended, input, layer), prefix + AttentionNorm, channels, outputProjection);

        // MLP: Wi, erf GELU, W2, residual, LayerNorm.
        var up = Consumers(afterAttention).Where(IsProjection).ToList();
        if (up.Count != 1)
        {
            throw Fail(up.FirstOrDefault() ?? outputProjection, $"layer {layer}: the attention block's output feeds {up.Count} projections, expected 1 (the intermediate dense)");
        }

        var (intermediate, intermediateBias) = BiasAdd(up[0], layer);
        AddProjection(prefix + Intermediate, up[0], intermediateBias);
        var down = FollowErfGelu(intermediate, layer);
        var (mlpOut, downBias) = BiasAdd(down, layer);
        AddProjection(prefix + Output, down, downBias);
        string output = MatchLayerNorm(Residual(mlpOut, afterAttention, layer), prefix + OutputNorm, channels, down);

        int mlpWidth = tensors[prefix + Intermediate + ".weight"].Shape[0];
        CheckShape(prefix + Query + ".weight", [channels, channels], query.Projection);
        CheckShape(prefix + Key + ".weight", [channels, channels], key.Projection);
        CheckShape(prefix + Value + ".weight", [channels, channels], value.Projection);
        CheckShape(prefix + AttentionOutput + ".weight", [channels, channels], outputProjection);
        CheckShape(prefix + Intermediate + ".weight", [mlpWidth, channels], up[0]);
        CheckShape(prefix + Output + ".weight", [channels, mlpWidth], down);
        return new Block(output, softmax.Outputs[0], heads, mlpWidth);
    }

    // A projection: MatMul(x, W) with W a 2-D float initializer.
    private bool IsProjection(OnnxNode node) =>
        node.OpType == "MatMul" && node.Inputs.Count == 2 && Initializer(node.Inputs[1]) is { Dims.Count: 2, DataType: OnnxDataType.Float };

    private OnnxTensor? Initializer(string name)
    {
        // Shared weights are sometimes routed through Identity nodes.
        while (!graph.Initializers.ContainsKey(name) && producers.TryGetValue(name, out var p) && p.OpType == "Identity")
        {
            name = p.Inputs[0];
        }

        return graph.Initializers.GetValueOrDefault(name);
    }

    // The Add of a bias after a projection's MatMul: returns the sum's value name and the bias initializer's name.
    private (string Output, string Bias) BiasAdd(OnnxNode matMul, int layer)
    {
        var next = Consumers(matMul.Outputs[0]);
        var add = next.Count == 1 && next[0].OpType == "Add" ? next[0]
            : throw Fail(next.FirstOrDefault() ?? matMul, $"layer {layer}: expected the bias Add after {matMul.Label}");
        string bias = add.Inputs[0] == matMul.Outputs[0] ? add.Inputs[1] : add.Inputs[0];
        if (Initializer(bias) is not { Dims.Count: 1 })
        {
            throw Fail(add, $"layer {layer}: the bias '{bias}' is not a 1-D initializer");
        }

        return (add.Outputs[0], bias);
    }

    // Follows a value through head-splitting/merging layout ops (Reshape, Transpose, ...) to the MatMul it enters.
    // Shape nodes that read its dimensions are side branches and are ignored. Returns the MatMul, which operand the
    // value is, and the first Reshape met (whose shape gives the heads).
    private (OnnxNode Target, int Slot, OnnxNode? Reshape) FollowLayout(string value, int layer)
    {
        OnnxNode? reshape = null;
        for (int step = 0; step < 16; step++)
        {
            var next = Consumers(value).Where(n => n.OpType != "Shape").ToList();
            if (next.Count != 1)
            {
                throw Fail(next.FirstOrDefault() ?? producers[value], $"layer {layer}: the attention path branches into {next.Count} nodes");
            }

            var node = next[0];
            if (node.OpType == "MatMul")
            {
                return (node, node.Inputs[0] == value ? 0 : 1, reshape);
            }

            if (!LayoutOps.Contains(node.OpType))
            {
                throw Fail(node, $"layer {layer}: unexpected op in the attention path");
            }

            if (node.OpType == "Reshape")
            {
                reshape ??= node;
            }

            value = node.Outputs[0];
        }

        throw Fail(producers[value], $"layer {layer}: the attention path does not reach a MatMul");
    }

    // From the score MatMul to the Softmax: scale (Div by √D or Mul by 1/√D) and the additive mask are allowed.
    private (OnnxNode Softmax, float? Scale) FollowToSoftmax(OnnxNode score, int layer)
    {
        string value = score.Outputs[0];
        float? scale = null;
        for (int step = 0; step < 8; step++)
        {
            var next = Consumers(value);
            if (next.Count != 1)
            {
                throw Fail(next.FirstOrDefault() ?? score, $"layer {layer}: the attention scores feed {next.Count} nodes, expected 1");
            }

            var node = next[0];
            switch (node.OpType)
            {
                case "Softmax":
                    {
                        long axis = node.Attributes.TryGetValue("axis", out var a) ? a.I : -1;
                        if (axis is not (-1 or 3))
                        {
                            throw Fail(node, $"layer {layer}: Softmax over axis {axis}, expected the last (keys)");
                        }

                        return (node, scale);
                    }

                case "Div" or "Mul" when node.Inputs[0] == value && ScalarConstant(node.Inputs[1]) is float c:
                    scale = node.OpType == "Div" ? c : 1 / c;
                    break;
                case "Add" when !node.Inputs.All(i => i == value):
                    break; // the padding mask: (1 − mask)·(−10000) or −∞, broadcast over heads and queries
                default:
                    throw Fail(node, $"layer {layer}: unexpected op between the attention scores and the Softmax");
            }

            value = node.Outputs[0];
        }

        throw Fail(score, $"layer {layer}: no Softmax after the attention scores");
    }

    // Heads and head size from the head-splitting Reshape's shape ([.., H, D]), checked against the scale √D.
    private (int Heads, int HeadSize) HeadsOf(OnnxNode? reshape, float? scale, int channels, int layer)
    {
        long[]? shape = null;
        if (reshape is not null)
        {
            shape = IntConstant(reshape.Inputs[1]);
            if (shape is null && producers.TryGetValue(reshape.Inputs[1], out var concat) && concat.OpType == "Concat")
            {
                var parts = concat.Inputs.Select(IntConstant).ToList();
                shape = parts.Count >= 2 && parts[^1] is { Length: 1 } && parts[^2] is { Length: 1 } ? [parts[^2]![0], parts[^1]![0]] : null;
            }
        }

        long heads = 0, headSize = 0;
        if (shape is { Length: >= 2 })
        {
            (heads, headSize) = (shape[^2], shape[^1]);
            if (heads == -1 && headSize > 0)
            {
                heads = channels / headSize;
            }
            else if (headSize == -1 && heads > 0)
            {
                headSize = channels / heads;
            }
        }
        else if (scale is float s)
        {
            headSize = (long)Math.Round(s * (double)s);
            heads = headSize > 0 ? channels / headSize : 0;
        }

        var at = reshape ?? graph.Nodes[0];
        if (heads <= 0 || headSize <= 0 || heads * headSize != channels)
        {
            throw Fail(at, $"layer {layer}: cannot read the heads: shape gives {heads} heads of size {headSize} for {channels} channels");
        }

        if (scale is float given && Math.Abs(given - Math.Sqrt(headSize)) > 1e-3 * Math.Sqrt(headSize))
        {
            throw Fail(at, $"layer {layer}: attention scores are scaled by 1/{given}, expected 1/√{headSize}");
        }

        return ((int)heads, (int)headSize);
    }

    // value + residual, in either order.
    private string Residual(string value, string residual, int layer)
    {
        var add = Consumers(value).SingleOrDefault(n => n.OpType == "Add" && n.Inputs.Contains(residual))
            ?? throw Fail(Consumers(value).FirstOrDefault() ?? producers[value], $"layer {layer}: expected the residual Add with the block's input");
        return add.Outputs[0];
    }

    // From the intermediate projection's output to the output projection: only the exact GELU,
    // x·½·(1 + erf(x/√2)) (or a Gelu node without the tanh approximation), may lie between.
    private OnnxNode FollowErfGelu(string x, int layer)
    {
        var frontier = new Queue<string>([x]);
        var seen = new HashSet<OnnxNode>();
        OnnxNode? down = null;
        bool erf = false;
        while (frontier.Count > 0)
        {
            foreach (var node in Consumers(frontier.Dequeue()))
            {
                if (!seen.Add(node))
                {
                    continue;
                }

                if (seen.Count > 16)
                {
                    throw Fail(node, $"layer {layer}: the MLP activation is not the erf GELU pattern");
                }

                if (IsProjection(node))
                {
                    down = down is null || down == node ? node : throw Fail(node, $"layer {layer}: the MLP activation feeds two projections");
                    continue;
                }

                switch (node.OpType)
                {
                    case "Erf":
                        {
                            var divide = producers.GetValueOrDefault(node.Inputs[0]);
                            float? c = divide is { Inputs.Count: 2 } && divide.Inputs[0] == x ? ScalarConstant(divide.Inputs[1]) : null;
                            bool bySqrt2 = divide?.OpType == "Div" && c is float d && Math.Abs(d - Math.Sqrt(2)) < 1e-5
                                || divide?.OpType == "Mul" && c is float m && Math.Abs(m - Math.Sqrt(0.5)) < 1e-5;
                            erf = bySqrt2 ? true : throw Fail(node, $"layer {layer}: erf of something other than x/√2; not the exact GELU");
                            break;
                        }

                    case "Gelu" when !node.Attributes.TryGetValue("approximate", out var approximate) || approximate.S == "none":
                        erf = true;
                        break;
                    case "Div" or "Mul" or "Add":
                        break;
                    case "Tanh" or "Pow" or "Sigmoid" or "FastGelu" or "Gelu":
                        throw Fail(node, $"layer {layer}: the MLP activation is not the exact erf GELU (this looks like a tanh/sigmoid approximation)");
                    default:
                        throw Fail(node, $"layer {layer}: unexpected op in the MLP activation");
                }

                foreach (string output in node.Outputs)
                {
                    frontier.Enqueue(output);
                }
            }
        }

        if (down is null || !erf)
        {
            throw Fail(producers[x], $"layer {layer}: {(down is null ? "no output projection after the MLP activation" : "no Erf in the MLP activation")}");
        }

        return down;
    }

    // LayerNorm at value x: the LayerNormalization node or torch's decomposition. Records γ and β under name.weight and
    // name.bias and checks ε against the other norms. Returns the normalised value's name.
    private string MatchLayerNorm(string x, string name, int channels, OnnxNode anchor)
    {
        string gamma, beta, output;
        float eps;
        var fused = Consumers(x).FirstOrDefault(n => n.OpType == "LayerNormalization");
        if (fused is not null)
        {
            if (fused.Inputs.Count < 3 || fused.Inputs[2].Length == 0)
            {
                throw Fail(fused, $"'{name}' has no bias");
            }

            (gamma, beta, output) = (fused.Inputs[1], fused.Inputs[2], fused.Outputs[0]);
            eps = fused.Attributes.TryGetValue("epsilon", out var e) ? e.F : 1e-5f;
        }
        else
        {
            var mean = Next(x, "ReduceMean", name, anchor);
            var centered = Next(mean.Outputs[0], "Sub", name, mean);
            if (!centered.Inputs.SequenceEqual([x, mean.Outputs[0]]))
            {
                throw Fail(centered, $"'{name}': expected x − mean(x)");
            }

            var squared = Consumers(centered.Outputs[0]).FirstOrDefault(n => n.OpType is "Pow" or "Mul")
                ?? throw Fail(centered, $"'{name}': expected the square of x − mean(x)");
            if (squared.OpType == "Pow" ? ScalarConstant(squared.Inputs[1]) != 2f : squared.Inputs[0] != squared.Inputs[1])
            {
                throw Fail(squared, $"'{name}': expected the square of x − mean(x)");
            }

            var variance = Next(squared.Outputs[0], "ReduceMean", name, squared);
            var plusEps = Next(variance.Outputs[0], "Add", name, variance);
            eps = ScalarConstant(plusEps.Inputs[0] == variance.Outputs[0] ? plusEps.Inputs[1] : plusEps.Inputs[0])
                ?? throw Fail(plusEps, $"'{name}': ε is not a constant");
            var root = Next(plusEps.Outputs[0], "Sqrt", name, plusEps);
            var normalized = Next(root.Outputs[0], "Div", name, root);
            if (normalized.Inputs[0] != centered.Outputs[0])
            {
                throw Fail(normalized, $"'{name}': expected (x − mean) / √(var + ε)");
            }

            var scaled = Next(normalized.Outputs[0], "Mul", name, normalized);
            var shifted = Next(scaled.Outputs[0], "Add", name, scaled);
            gamma = scaled.Inputs[0] == normalized.Outputs[0] ? scaled.Inputs[1] : scaled.Inputs[0];
            beta = shifted.Inputs[0] == scaled.Outputs[0] ? shifted.Inputs[1] : shifted.Inputs[0];
            output = shifted.Outputs[0];
            fused = shifted;
        }

        if (epsilon is float known && known != eps)
        {
            throw Fail(fused, $"'{name}' has ε = {eps}, other LayerNorms {known}");
        }

        epsilon = eps;
        AddTensor(name + ".weight", gamma, transpose: false, fused);
        AddTensor(name + ".bias", beta, transpose: false, fused);
        CheckShape(name + ".weight", [channels], fused);
        CheckShape(name + ".bias", [channels], fused);
        return output;
    }

    private OnnxNode Next(string value, string opType, string what, OnnxNode anchor)
    {
        var next = Consumers(value);
        return next.FirstOrDefault(n => n.OpType == opType)
            ?? throw Fail(next.FirstOrDefault() ?? anchor, $"'{what}': expected {opType} next in the LayerNorm pattern");
    }

    // ---- tensors ----

    private void AddProjection(string name, OnnxNode matMul, string bias)
    {
        // Where the exporter kept the Hugging Face bias name, it must agree with the role the graph gives this MatMul.
        if (bias.EndsWith(".bias", StringComparison.Ordinal) && bias.Contains('.') && !bias.EndsWith(name + ".bias", StringComparison.Ordinal)
            && bias.Contains("layer.", StringComparison.Ordinal))
        {
            throw Fail(matMul, $"its bias is '{bias}' but the graph's structure makes it '{name}'");
        }

        AddTensor(name + ".weight", matMul.Inputs[1], transpose: true, matMul);
        AddTensor(name + ".bias", bias, transpose: false, matMul);
        CheckShape(name + ".bias", [tensors[name + ".weight"].Shape[0]], matMul);
    }

    private void AddTensor(string name, string initializer, bool transpose, OnnxNode? at = null)
    {
        var tensor = Initializer(initializer)
            ?? throw (at is null ? new HeadLensException($"{source}: missing initializer '{initializer}' for {name}") : Fail(at, $"missing initializer '{initializer}' for {name}"));
        float[] data = tensor.ToFloats();
        int[] shape = tensor.Shape;
        if (transpose)
        {
            // ONNX MatMul's weight is [in, out]; Hugging Face's nn.Linear weight is [out, in].
            int rows = shape[0], columns = shape[1];
            var transposed = new float[data.Length];
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < columns; c++)
                {
                    transposed[c * rows + r] = data[r * columns + c];
                }
            }

            (data, shape) = (transposed, [columns, rows]);
        }

        foreach (float v in data)
        {
            if (!float.IsFinite(v))
            {
                throw new HeadLensException($"{source}: initializer '{initializer}' ({name}) holds {v}");
            }
        }

        tensors[name] = new BertTensor(shape, data);
    }

    private void CheckShape(string name, int[] expected, OnnxNode at)
    {
        int[] shape = tensors[name].Shape;
        if (!shape.SequenceEqual(expected))
        {
            throw Fail(at, $"{name} has shape [{string.Join(", ", shape)}], expected [{string.Join(", ", expected)}]");
        }
    }

    // ---- constants: initializers or Constant nodes ----

    private OnnxTensor? ConstantTensor(string name)
    {
        if (Initializer(name) is { } tensor)
        {
            return tensor;
        }

        return producers.TryGetValue(name, out var node) && node.OpType == "Constant" && node.Attributes.TryGetValue("value", out var value)
            ? value.T
            : null;
    }

    private float? ScalarConstant(string name)
    {
        if (producers.TryGetValue(name, out var node) && node.OpType == "Constant" && node.Attributes.TryGetValue("value_float", out var f))
        {
            return f.F;
        }

        var tensor = ConstantTensor(name);
        return tensor is { ElementCount: 1, DataType: OnnxDataType.Float or OnnxDataType.Double or OnnxDataType.Float16 } ? tensor.ToFloats()[0] : null;
    }

    private long[]? IntConstant(string name)
    {
        if (producers.TryGetValue(name, out var node) && node.OpType == "Constant" && node.Attributes.TryGetValue("value_ints", out var ints))
        {
            return [.. ints.Ints];
        }

        var tensor = ConstantTensor(name);
        return tensor is { DataType: OnnxDataType.Int64 or OnnxDataType.Int32 } ? tensor.ToInt64s() : null;
    }

    private List<OnnxNode> Consumers(string value) => consumers.GetValueOrDefault(value) ?? [];

    private HeadLensException Fail(OnnxNode node, string problem) => new($"{source}: {node.Label}: {problem}");
}
