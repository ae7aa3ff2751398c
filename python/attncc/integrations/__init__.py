"""attncc inside other frameworks (docs/integrations.md).

    attncc.integrations.transformers.register()   # attn_implementation="attncc"
    torch.compile(model, backend="attncc")         # attncc.integrations.dynamo

Nothing is imported here: `import attncc` stays fast and works without
transformers. `op` is the torch operator both integrations call.
"""
