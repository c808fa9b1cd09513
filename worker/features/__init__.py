"""Features that ride on the pipeline and the memory model, one module or folder each, none
importing another: batch consolidation, procedural memory (the prompt optimizer), memory tools
for agents, and forgetting a user."""
