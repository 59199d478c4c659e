"""The MCP server at `/mcp`: the household's memory and chat as tools for MCP clients."""
