"""The app's pages: thin Streamlit drawing over ``etalon.ui``'s logic modules, one ``page()``
function per module."""
